"""The encodings Tollgate counts with: compacted, and counting exactly as tiktoken's own do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tiktoken
from tiktoken_ext import openai_public  # type: ignore[import-untyped]

from app.kit.tokens import count_chat_prompt, count_text, encoding_name, load_encoding

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["hello world", "Grüße, 世界! 🙂 " * 50, "def f(x):\n    return x ** 2\n" * 20, "<|endoftext|> is text here"]


def test_the_pickling_copy_of_the_merge_table_is_dropped() -> None:
    for model in ("gpt-4o-mini", "text-embedding-3-small"):
        assert load_encoding(encoding_name(model))._mergeable_ranks == {}


def test_compacted_encodings_count_exactly_as_full_ones() -> None:
    for model, name in (("gpt-4o-mini", "o200k_base"), ("text-embedding-3-small", "cl100k_base")):
        full = tiktoken.Encoding(**getattr(openai_public, name)())
        for text in TEXTS:
            tokens = full.encode(text, disallowed_special=())
            assert load_encoding(name).encode(text, disallowed_special=()) == tokens
            assert count_text(model, text) == len(tokens)
            assert load_encoding(name).decode(tokens) == text
    full = tiktoken.Encoding(**openai_public.o200k_base())
    messages = [{"role": "user", "content": TEXTS[1]}]
    # The cookbook's count: reply priming, the message's own overhead, then its role and content.
    expected = 3 + 3 + len(full.encode("user")) + len(full.encode(TEXTS[1]))
    assert count_chat_prompt("gpt-4o-mini", messages) == expected


def test_one_replica_never_loads_the_redis_client() -> None:
    """Without a Redis URL the limiter is in process memory; the client library stays unimported."""
    code = "import sys, app.main; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
