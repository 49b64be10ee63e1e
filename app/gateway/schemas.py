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


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = _optional(body, name, int, "an integer")
    if value is not None and (isinstance(value, bool) or value < 1):
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name, code="invalid_value")
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
    stream = bool(_optional(body, "stream", bool, "a boolean"))
    options = _optional(body, "stream_options", dict, "an object") or {}
    if options and not stream:
        raise InvalidRequest(
            "'stream_options' is only allowed when 'stream' is true.",
            param="stream_options",
            code="invalid_value",
        )
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _positive_int(body, name)
    return ChatRequest(body, model, messages, stream, options.get("include_usage") is True)


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
