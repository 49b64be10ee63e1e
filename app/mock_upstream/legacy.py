"""Legacy completions and moderations for the mock upstream, shaped like OpenAI's answers."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import tiktoken

from app.mock_upstream.chat import count_tokens, cut_to_budget, reply_pieces
from app.mock_upstream.prelude import MockControls

# OpenAI's default when a legacy completion sets no max_tokens.
DEFAULT_MAX_TOKENS = 16
MODERATION_CATEGORIES = (
    "hate", "hate/threatening", "harassment", "harassment/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip
# A text containing this word is flagged for violence, so tests can see a flagged result.
FLAG_WORD = "hurt"


def prompts_of(body: dict[str, Any]) -> list[str | list[int]] | None:
    prompt: Any = body.get("prompt")
    if isinstance(prompt, str) or _is_tokens(prompt):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_tokens(p) for p in prompt):
        return list(prompt)
    return None


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int for t in value)


def _encoding_name(model: str) -> str:
    """Legacy models use older encodings (gpt-3.5-turbo-instruct: cl100k_base), as OpenAI counts them."""
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return "o200k_base"


def completion_plan(
    body: dict[str, Any], controls: MockControls, completion_id: str
) -> tuple[dict[str, Any], list[str]]:
    """The whole answer as JSON, and the pieces its stream is cut into, so both agree exactly."""
    prompts = prompts_of(body) or []
    limit = body.get("max_tokens")
    budget = limit if type(limit) is int else DEFAULT_MAX_TOKENS
    pieces, cut = cut_to_budget(reply_pieces(controls), budget)
    text = "".join(pieces)
    n_value = body.get("n")
    n = n_value if isinstance(n_value, int) else 1
    choices = [
        {"text": text, "index": i, "logprobs": None, "finish_reason": "length" if cut else "stop"}
        for i in range(len(prompts) * n)
    ]
    encoding = _encoding_name(body["model"])
    prompt_tokens = sum(len(p) if isinstance(p, list) else count_tokens(p, encoding) for p in prompts)
    completion_tokens = count_tokens(text, encoding) * len(choices)
    payload: dict[str, Any] = {
        "id": completion_id,
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    if controls.no_usage:
        del payload["usage"]
    return payload, pieces


async def completion_events(
    plan: dict[str, Any], pieces: list[str], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    envelope = {k: plan[k] for k in ("id", "object", "created", "model")}
    for choice in plan["choices"]:
        for piece in pieces:
            chunk = {"text": piece, "index": choice["index"], "logprobs": None, "finish_reason": None}
            yield _sse({**envelope, "choices": [chunk]})
        last = {"text": "", "index": choice["index"], "logprobs": None, "finish_reason": choice["finish_reason"]}
        yield _sse({**envelope, "choices": [last]})
    if include_usage and "usage" in plan:
        yield _sse({**envelope, "choices": [], "usage": plan["usage"]})
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def moderation_inputs(body: dict[str, Any]) -> list[str] | None:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    texts: list[str] = []
    for item in value:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict) and item.get("type") in ("text", "image_url"):
            texts.append(item.get("text") or "")
        else:
            return None
    return texts


def moderation_payload(texts: list[str], model: str, moderation_id: str) -> dict[str, Any]:
    results = []
    for text in texts:
        flagged = FLAG_WORD in text.lower()
        categories = {name: flagged and name == "violence" for name in MODERATION_CATEGORIES}
        scores = {name: (0.91 if categories[name] else 0.0001) for name in MODERATION_CATEGORIES}
        applied = {name: ["text"] for name in MODERATION_CATEGORIES}
        results.append(
            {
                "flagged": flagged,
                "categories": categories,
                "category_scores": scores,
                "category_applied_input_types": applied,
            }
        )
    return {"id": moderation_id, "model": model, "results": results}
