"""Token counting with tiktoken: for estimates and for streams whose usage block never came.

Upstream usage is the billing truth; these counts fill in only when upstream could not say.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import tiktoken

DEFAULT_ENCODING = "o200k_base"
# Per OpenAI's cookbook ("How to count tokens with tiktoken") for current chat models.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


@lru_cache(maxsize=256)
def encoding_for(model: str) -> tiktoken.Encoding:
    """Newer or private models unknown to tiktoken get o200k_base, the current family's encoding."""
    name = model.removeprefix("ft:").split(":", 1)[0]
    try:
        return tiktoken.encoding_for_model(name)
    except KeyError:
        return tiktoken.get_encoding(DEFAULT_ENCODING)


def count_text(model: str, text: str) -> int:
    if not text:
        return 0
    return len(encoding_for(model).encode(text, disallowed_special=()))


def _message_strings(message: Any) -> Iterable[str]:
    if not isinstance(message, dict):
        return
    for key, value in message.items():
        if isinstance(value, str):
            yield value
        elif key == "content" and isinstance(value, list):
            for part in value:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"]
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict):
                    yield str(function.get("name", ""))
                    yield str(function.get("arguments", ""))


def count_chat_prompt(model: str, messages: list[Any]) -> int:
    encoding = encoding_for(model)
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for text in _message_strings(message):
            total += len(encoding.encode(text, disallowed_special=()))
        if isinstance(message, dict) and "name" in message:
            total += TOKENS_PER_NAME
    return total


def count_embedding_input(model: str, value: Any) -> int:
    """Embedding input may be text, a list of texts, token ids or lists of token ids."""
    if isinstance(value, str):
        return count_text(model, value)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        return sum(count_embedding_input(model, v) for v in value)
    return 0
