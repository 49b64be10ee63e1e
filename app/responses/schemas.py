"""What Tollgate reads from a Responses API request: enough to authorize, own-check and meter it.
The body itself is forwarded as sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.errors import InvalidRequest
from app.usage.pricing import TokenUsage

# Tools whose cost is per token, which Tollgate meters. Hosted tools (web search, file search,
# code interpreter, image generation, computer use, remote MCP) are billed per call or per
# container by OpenAI, and file search reads vector stores Tollgate does not yet own-check.
METERED_TOOL_TYPES = frozenset({"function", "custom"})


@dataclass(frozen=True, slots=True)
class ResponseCreate:
    model: str
    stream: bool
    max_output_tokens: int | None
    previous_response_id: str | None
    conversation_id: str | None


def parse_create(body: dict[str, Any]) -> ResponseCreate:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    if body.get("background") is True:
        raise InvalidRequest(
            "Tollgate does not serve background responses: it meters every call while it runs, and a "
            "background response would finish where Tollgate cannot see its usage. Send it without "
            "background (stream it if it is long).",
            param="background",
            code="unsupported_parameter",
        )
    if body.get("prompt") is not None:
        raise InvalidRequest(
            "Tollgate does not serve stored prompts ('prompt'): it cannot count their tokens to reserve "
            "the cost. Send the instructions and input in the request.",
            param="prompt",
            code="unsupported_parameter",
        )
    previous = _optional_str(body, "previous_response_id")
    conversation = _conversation_id(body.get("conversation"))
    if previous is not None and conversation is not None:
        raise InvalidRequest(
            "'previous_response_id' and 'conversation' cannot be used together.", param="previous_response_id"
        )
    check_input(body.get("input"), "input")
    _check_tools(body.get("tools"))
    return ResponseCreate(
        model=model,
        stream=stream is True,
        max_output_tokens=_positive_int(body, "max_output_tokens"),
        previous_response_id=previous,
        conversation_id=conversation,
    )


def check_input(value: Any, param: str) -> None:
    """Text or a list of input items. Parts that name a file are refused: a file id could be
    another tenant's, and a file's tokens cannot be counted before the call."""
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise InvalidRequest(f"'{param}' must be a string or an array of input items.", param=param)
    for index, item in enumerate(value):
        content = item.get("content")
        parts = content if isinstance(content, list) else []
        files = [p for p in parts if isinstance(p, dict) and p.get("type") == "input_file"]
        if item.get("type") == "input_file" or files:
            raise InvalidRequest(
                "Tollgate does not accept file inputs ('input_file') on the Responses API yet.",
                param=f"{param}[{index}]",
                code="unsupported_parameter",
            )


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise InvalidRequest("'tools' must be an array of tool objects.", param="tools")
    for index, tool in enumerate(tools):
        if tool.get("type") not in METERED_TOOL_TYPES:
            raise InvalidRequest(
                f"Tollgate serves only function and custom tools; '{tool.get('type')}' is a hosted tool "
                "that OpenAI bills per call, which Tollgate cannot meter.",
                param=f"tools[{index}]",
                code="unsupported_tool",
            )


def _conversation_id(value: Any) -> str | None:
    """``conversation`` is an id or ``{"id": ...}``."""
    if value is None:
        return None
    ident = value.get("id") if isinstance(value, dict) else value
    if not isinstance(ident, str) or not ident:
        message = "'conversation' must be a conversation id or an object with an 'id'."
        raise InvalidRequest(message, param="conversation")
    return ident


def _optional_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidRequest(f"'{name}' must be a non-empty string.", param=name)
    return value


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    return value


def tokens_from_response_usage(block: dict[str, Any]) -> TokenUsage:
    """The Responses API's usage block: ``input_tokens`` (cached ones included) and
    ``output_tokens`` (reasoning ones included)."""
    input_details = block.get("input_tokens_details") or {}
    output_details = block.get("output_tokens_details") or {}
    return TokenUsage(
        prompt=int(block.get("input_tokens") or 0),
        cached=int(input_details.get("cached_tokens") or 0),
        completion=int(block.get("output_tokens") or 0),
        reasoning=int(output_details.get("reasoning_tokens") or 0),
    )


def output_text(response: dict[str, Any] | None) -> str:
    """The generated text of a response object (messages, refusals, function-call arguments)."""
    parts: list[str] = []
    for item in (response or {}).get("output") or ():
        if not isinstance(item, dict):
            continue
        parts.extend(v for v in (item.get("arguments"), item.get("name")) if isinstance(v, str))
        for part in item.get("content") or ():
            if isinstance(part, dict):
                parts.extend(v for v in (part.get("text"), part.get("refusal")) if isinstance(v, str))
    return "".join(parts)
