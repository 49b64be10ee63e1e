"""Chat completions for the mock upstream: deterministic replies, token accounting and the SSE script."""

from __future__ import annotations

import asyncio
import enum
import functools
import json
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import tiktoken

from app.mock_upstream.prelude import MockControls

REPLY_WORDS = (
    "This", "is", "a", "deterministic", "mock", "reply", "from", "the", "fake", "upstream",
    "server", "for", "Tollgate", "tests.",
)  # fmt: skip
DEFAULT_REPLY_WORDS = 12
SYSTEM_FINGERPRINT = "fp_mock0001"
STALL_SECONDS = 3600.0
# Tool-call arguments are streamed in slices this long, roughly like OpenAI's small argument deltas.
ARGUMENT_SLICE = 8


@functools.cache
def _encoding(name: str) -> tiktoken.Encoding:
    return tiktoken.get_encoding(name)


def count_tokens(text: str, encoding_name: str = "o200k_base") -> int:
    # Special-token text like "<|endoftext|>" in a prompt must be counted, not crash the mock.
    return len(_encoding(encoding_name).encode(text, disallowed_special=()))


def count_chat_prompt_tokens(messages: Sequence[Mapping[str, object]], encoding_name: str = "o200k_base") -> int:
    """Prompt tokens as estimated by OpenAI's cookbook recipe for gpt-4o-era models."""
    total = 3  # every reply is primed with <|start|>assistant<|message|>
    for message in messages:
        total += 3
        for key, value in message.items():
            if isinstance(value, str):
                total += count_tokens(value, encoding_name)
                if key == "name":
                    total += 1
            elif key == "content" and isinstance(value, list):
                total += sum(count_tokens(text, encoding_name) for text in _text_parts(value))
    return total


def _text_parts(parts: list[Any]) -> Iterator[str]:
    for part in parts:
        if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
            yield part["text"]


def validate_chat_body(body: Any) -> str | None:
    """Return an OpenAI-style message for the first problem, so the mock rejects what OpenAI rejects."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request. The body must be a JSON object."
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Missing required parameter: 'messages'."
    if not all(isinstance(message, dict) for message in messages):
        return "Invalid type for 'messages': each message must be an object."
    return None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatPlan:
    """Everything about one completion, decided up front so JSON and SSE answers agree exactly."""

    id: str
    created: int
    model: str
    pieces: tuple[str, ...]  # reply text chunks, or argument slices when answering with a tool call
    finish_reason: str
    usage: dict[str, Any] | None
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def plan_chat(body: dict[str, Any], controls: MockControls, *, completion_id: str, call_id: str) -> ChatPlan:
    created = int(time.time())
    prompt_tokens = count_chat_prompt_tokens(body["messages"])
    if controls.tool_call is not None and body.get("tools"):
        call = ToolCall(call_id, controls.tool_call.name, controls.tool_call.arguments)
        args = call.arguments
        slices = tuple(args[i : i + ARGUMENT_SLICE] for i in range(0, len(args), ARGUMENT_SLICE))
        visible_tokens = count_tokens(call.name) + count_tokens(args)
        usage = _usage(prompt_tokens, visible_tokens, controls)
        return ChatPlan(completion_id, created, body["model"], slices, "tool_calls", usage, call)
    pieces, cut = cut_to_budget(reply_pieces(controls), _text_budget(body, controls))
    usage = _usage(prompt_tokens, count_tokens("".join(pieces)), controls)
    finish_reason = "length" if cut else "stop"
    return ChatPlan(completion_id, created, body["model"], tuple(pieces), finish_reason, usage)


def reply_pieces(controls: MockControls) -> list[str]:
    """Stream chunks: the first word bare, every later one with its leading space, so joining restores
    the reply exactly (also for ``content`` with repeated spaces)."""
    if controls.content is not None:
        words = controls.content.split(" ") if controls.content else []
    else:
        count = DEFAULT_REPLY_WORDS if controls.words is None else max(controls.words, 0)
        words = [REPLY_WORDS[i % len(REPLY_WORDS)] for i in range(count)]
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


def _text_budget(body: dict[str, Any], controls: MockControls) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        limit = body.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool):
            # Like OpenAI's reasoning models, hidden reasoning eats into the completion budget first.
            return max(limit - controls.reasoning_tokens, 0)
    return None


def cut_to_budget(pieces: list[str], budget: int | None) -> tuple[list[str], bool]:
    if budget is None:
        return pieces, False
    for keep in range(len(pieces)):
        if count_tokens("".join(pieces[: keep + 1])) > budget:
            return pieces[:keep], True
    return pieces, False


def _usage(prompt_tokens: int, visible_tokens: int, controls: MockControls) -> dict[str, Any] | None:
    if controls.no_usage:
        return None
    completion_tokens = visible_tokens + controls.reasoning_tokens
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {
            "cached_tokens": min(controls.cached_tokens, prompt_tokens),
            "audio_tokens": 0,
        },
        "completion_tokens_details": {
            "reasoning_tokens": controls.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_payload(plan: ChatPlan) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None, "annotations": []}
    if plan.tool_call is not None:
        message["content"] = None
        message["tool_calls"] = [_tool_call_json(plan.tool_call, plan.tool_call.arguments)]
    payload: dict[str, Any] = {
        "id": plan.id,
        "object": "chat.completion",
        "created": plan.created,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}],
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if plan.usage is not None:
        payload["usage"] = plan.usage
    return payload


def _tool_call_json(call: ToolCall, arguments: str) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


@dataclass(frozen=True)
class StreamOptions:
    include_usage: bool = False
    chunk_delay_s: float = 0.0
    drop_after: int | None = None
    stall_after: int | None = None
    malformed: bool = False


class StreamAbortedError(Exception):
    """Raised on purpose mid-body (``drop_after``): uvicorn then closes the connection without the
    terminating chunk, which is what a crashed or cut-off upstream looks like to the gateway."""


class _Action(enum.Enum):
    ABORT = "abort"
    STALL = "stall"


async def stream_events(plan: ChatPlan, options: StreamOptions) -> AsyncGenerator[bytes, None]:
    first = True
    for item in _event_script(plan, options):
        if item is _Action.ABORT:
            raise StreamAbortedError("mock upstream: drop_after reached, cutting the stream on purpose")
        if item is _Action.STALL:
            await asyncio.sleep(STALL_SECONDS)
            continue
        if not first and options.chunk_delay_s > 0:
            await asyncio.sleep(options.chunk_delay_s)
        first = False
        yield item


def _event_script(plan: ChatPlan, options: StreamOptions) -> Iterator[bytes | _Action]:
    """The SSE events in order, with abort/stall markers placed after the requested number of pieces.
    A limit beyond the last piece still fires before the finish chunk, so the stream never completes."""
    yield _sse(_chunk(plan, options, _first_delta(plan)))
    count = len(plan.pieces)
    malformed_at = count // 2 if options.malformed else None
    for sent in range(count + 1):
        if sent == malformed_at:
            yield b"data: {not json\n\n"
        if options.drop_after is not None and sent == min(options.drop_after, count):
            yield _Action.ABORT
        if options.stall_after is not None and sent == min(options.stall_after, count):
            yield _Action.STALL
        if sent < count:
            yield _sse(_chunk(plan, options, _piece_delta(plan, plan.pieces[sent])))
    yield _sse(_chunk(plan, options, {}, plan.finish_reason))
    if options.include_usage and plan.usage is not None:
        yield _sse({**_envelope(plan), "choices": [], "usage": plan.usage})
    yield b"data: [DONE]\n\n"


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _envelope(plan: ChatPlan) -> dict[str, Any]:
    return {
        "id": plan.id,
        "object": "chat.completion.chunk",
        "created": plan.created,
        "model": plan.model,
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _chunk(
    plan: ChatPlan, options: StreamOptions, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    chunk = _envelope(plan)
    chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    if options.include_usage:
        chunk["usage"] = None
    return chunk


def _first_delta(plan: ChatPlan) -> dict[str, Any]:
    if plan.tool_call is None:
        return {"role": "assistant", "content": ""}
    call = {"index": 0, **_tool_call_json(plan.tool_call, "")}
    return {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}


def _piece_delta(plan: ChatPlan, piece: str) -> dict[str, Any]:
    if plan.tool_call is None:
        return {"content": piece}
    return {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
