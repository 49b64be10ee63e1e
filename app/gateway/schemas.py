"""What the gateway needs to know of a request body, validated without rebuilding the body.

The body itself is forwarded as the client sent it (unknown and future fields preserved), so
these are views onto the parsed JSON, not models that would re-serialise it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest


@dataclass(slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    messages: list[Any]
    stream: bool
    client_wants_usage: bool


@dataclass(slots=True)
class EmbeddingRequest:
    body: dict[str, Any]
    model: str
    input: Any


def _require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' must be a non-empty string.", param="model", code="invalid_type")
    return model


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...], label: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidRequest(f"'{name}' must be {label}.", param=name, code="invalid_type")
    return value


# OpenAI's own bounds. The token cap's is ours: far above any model's output, far below the
# 64-bit counters that reserving it would otherwise overflow.
MAX_OUTPUT_TOKENS = 2**31 - 1
MAX_CHOICES = 128
MAX_BEST_OF = 20


def _positive_int(body: dict[str, Any], name: str, maximum: int = MAX_OUTPUT_TOKENS) -> int | None:
    value = _optional(body, name, int, "an integer")
    if value is not None and (isinstance(value, bool) or not 1 <= value <= maximum):
        raise InvalidRequest(f"'{name}' must be an integer from 1 to {maximum}.", param=name, code="invalid_value")
    return int(value) if value is not None else None


def parse_chat(body: dict[str, Any]) -> ChatRequest:
    model = _require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array.", param="messages", code="invalid_type")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"'messages[{i}]' must be an object with a string 'role'.",
                param=f"messages[{i}]",
                code="invalid_type",
            )
    stream, wants_usage = _stream_flags(body)
    _positive_int(body, "max_tokens")
    _positive_int(body, "max_completion_tokens")
    _positive_int(body, "n", MAX_CHOICES)
    return ChatRequest(body, model, messages, stream, wants_usage)


def parse_embeddings(body: dict[str, Any]) -> EmbeddingRequest:
    model = _require_model(body)
    value = body.get("input")
    if isinstance(value, str):
        ok = bool(value)
    elif isinstance(value, list):
        ok = bool(value) and all(isinstance(v, (str, int, list)) and not isinstance(v, bool) for v in value)
    else:
        ok = False
    if not ok:
        raise InvalidRequest(
            "'input' must be a non-empty string, array of strings, or array of token arrays.",
            param="input",
            code="invalid_type",
        )
    return EmbeddingRequest(body, model, value)


@dataclass(slots=True)
class CompletionRequest:
    model: str
    prompt: Any
    stream: bool
    client_wants_usage: bool
    # Completions upstream generates and bills: every prompt gets max(n, best_of) of them.
    choices: int


@dataclass(slots=True)
class ModerationRequest:
    model: str
    input: Any


def _stream_flags(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = bool(_optional(body, "stream", bool, "a boolean"))
    options = _optional(body, "stream_options", dict, "an object") or {}
    if options and not stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true.",
            param="stream_options",
            code="invalid_value",
        )
    return stream, options.get("include_usage") is True


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list) and bool(value) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _prompt_count(prompt: Any) -> int | None:
    """How many prompts a legacy completion carries (OpenAI's four shapes), None if malformed."""
    if isinstance(prompt, str) or _is_tokens(prompt):
        return 1
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) or _is_tokens(p) for p in prompt):
        return len(prompt)
    return None


def parse_completions(body: dict[str, Any]) -> CompletionRequest:
    model = _require_model(body)
    prompt = body.get("prompt")
    count = _prompt_count(prompt)
    if count is None:
        raise InvalidRequest(
            "'prompt' must be a non-empty string, array of strings, array of tokens, or array of token arrays.",
            param="prompt",
            code="invalid_type",
        )
    _optional(body, "suffix", str, "a string")
    stream, wants_usage = _stream_flags(body)
    _positive_int(body, "max_tokens")
    n = _positive_int(body, "n", MAX_CHOICES) or 1
    best_of = _positive_int(body, "best_of", MAX_BEST_OF) or 1
    return CompletionRequest(model, prompt, stream, wants_usage, count * max(n, best_of))


def parse_moderations(body: dict[str, Any], default_model: str) -> ModerationRequest:
    model = default_model if body.get("model") is None else _require_model(body)
    value = body.get("input")
    if isinstance(value, str):
        ok = True
    elif isinstance(value, list):
        ok = bool(value) and all(isinstance(v, (str, dict)) for v in value)
    else:
        ok = False
    if not ok:
        raise InvalidRequest(
            "'input' must be a string, an array of strings, or an array of input objects.",
            param="input",
            code="invalid_type",
        )
    return ModerationRequest(model, value)
