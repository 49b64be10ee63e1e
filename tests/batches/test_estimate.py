"""A batch's worst case, line by line, against hand-counted tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.batches.schemas import CHAT, EMBEDDINGS, RESPONSES, InputTally, output_usage
from app.errors import InvalidRequest
from app.usage.pricing import TokenUsage


def _raw(url: str, body: dict[str, Any], custom_id: str = "x") -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body}).encode()


def test_chat_lines_reserve_their_caps_times_n_else_the_models_maximum() -> None:
    tally = InputTally(CHAT, {"gpt-4o-mini": 16_384}, 4096)
    hi = [{"role": "user", "content": "hi"}]  # 3 + 3 + 1 ("user") + 1 ("hi") = 8 prompt tokens
    tally.add(1, _raw(CHAT, {"model": "gpt-4o-mini", "messages": hi, "max_completion_tokens": 10, "n": 3}, "a"))
    tally.add(2, _raw(CHAT, {"model": "gpt-4o-mini", "messages": hi}, "b"))
    assert (tally.model, tally.requests, tally.prompt_tokens, tally.output_tokens) == (
        "gpt-4o-mini",
        2,
        16,
        30 + 16_384,
    )


def test_responses_lines_use_max_output_tokens_and_the_default_when_unlisted() -> None:
    tally = InputTally(RESPONSES, {}, 4096)
    tally.add(1, _raw(RESPONSES, {"model": "gpt-4.1-mini", "input": "hi", "max_output_tokens": 50}, "a"))
    tally.add(2, _raw(RESPONSES, {"model": "gpt-4.1-mini", "input": "hi"}, "b"))
    # 3 (priming) + 3 (the one input item) + 1 ("hi"), per line.
    assert (tally.prompt_tokens, tally.output_tokens) == (14, 50 + 4096)


def test_embedding_lines_have_no_output() -> None:
    tally = InputTally(EMBEDDINGS, {}, 4096)
    tally.add(1, _raw(EMBEDDINGS, {"model": "text-embedding-3-small", "input": ["hello world", "hi"]}))
    assert (tally.prompt_tokens, tally.output_tokens) == (3, 0)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"[1, 2]", "is not a JSON object"),
        (_raw(CHAT, {"messages": []}), "needs a 'body' object with a 'model'"),
        (json.dumps({"custom_id": "x", "method": "GET", "url": CHAT, "body": {"model": "m"}}).encode(), "'POST'"),
        (_raw(CHAT, {"model": "m", "stream": True}), "asks for a stream"),
        (_raw(CHAT, {"model": "m", "n": 0}), "'n' that is not a positive integer"),
        (_raw(CHAT, {"model": "m", "max_tokens": "10"}), "output cap"),
    ],
)
def test_bad_lines_are_named(raw: bytes, problem: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        InputTally(CHAT, {}, 4096).add(7, raw)
    assert caught.value.message.startswith("Line 7 of the input file ") and problem in caught.value.message


def test_output_lines_count_only_answered_requests() -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}
    ok = {"response": {"status_code": 200, "body": {"usage": usage}}, "error": None}
    failed = {"response": {"status_code": 400, "body": {"usage": usage}}, "error": None}
    assert output_usage(CHAT, json.dumps(ok).encode()) == TokenUsage(prompt=10, cached=4, completion=5)
    assert output_usage(CHAT, json.dumps(failed).encode()) == TokenUsage()
    assert output_usage(CHAT, b"not json") == TokenUsage()
    responses = {"response": {"status_code": 200, "body": {"usage": {"input_tokens": 7, "output_tokens": 2}}}}
    assert output_usage(RESPONSES, json.dumps(responses).encode()) == TokenUsage(prompt=7, completion=2)
