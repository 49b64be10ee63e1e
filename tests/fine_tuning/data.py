"""Fine-tune files for the tests: valid chat examples, and the ways a file can be bad."""

from __future__ import annotations

import json
from typing import Any

from app.fine_tuning.validation import example_tokens


def example(i: int = 0) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You answer in one word."},
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": str(2 * i)},
        ]
    }


def lines(examples: list[Any]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in examples)


def good_file(n: int = 12) -> bytes:
    return lines([example(i) for i in range(n)])


def tokens_of(n: int = 12) -> int:
    """The training tokens of ``good_file(n)``, counted the cookbook way."""
    return sum(example_tokens(example(i)) for i in range(n))
