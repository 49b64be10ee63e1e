"""The Responses API of the mock upstream: JSON and SSE answers with OpenAI's event names, and the
stored responses' retrieve, delete, cancel and input items. Obeys the chat mock's controls
(errors and delays via the prelude; ``words``, ``content``, ``drop_after``, ``stall_after``,
``chunk_delay_ms``, ``no_usage``, ``cached_tokens``, ``reasoning_tokens``, ``malformed``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.mock_upstream.chat import STALL_SECONDS, StreamAbortedError, count_tokens, cut_to_budget, reply_pieces
from app.mock_upstream.prelude import MockControls, json_response
from app.mock_upstream.sse import EventStream, tracked
from app.mock_upstream.store import (
    MockStore,
    bad_request,
    input_items,
    item_tokens,
    list_page,
    new_id,
    not_found,
    store_of,
)


@dataclass(frozen=True)
class ResponsePlan:
    response: dict[str, Any]  # the final response object
    pieces: tuple[str, ...]
    item: dict[str, Any]  # the output message


async def create_response(request: Request) -> Response:
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return bad_request("you must provide a model parameter", "model")
    store = store_of(request)
    items = input_items(body.get("input", []))
    if items is None:
        return bad_request("Invalid 'input': expected a string or an array of input items.", "input")
    context, problem = _context(store, body)
    if problem is not None:
        return problem
    controls: MockControls = request.state.mock_controls
    plan = _plan(body, controls, items, context)
    _keep(store, body, plan, items, context)
    if body.get("stream") is not True:
        return _json(plan.response, controls)
    delay_ms = controls.chunk_delay_ms or request.app.state.config.chunk_delay_ms
    return EventStream(tracked(request.app.state, _events(plan, controls, delay_ms / 1000)))


def _context(store: MockStore, body: dict[str, Any]) -> tuple[int, Response | None]:
    previous = body.get("previous_response_id")
    if isinstance(previous, str):
        if previous not in store.context:
            return 0, not_found(f"Previous response with id '{previous}' not found.", "previous_response_id")
        return store.context[previous], None
    conversation = body.get("conversation")
    conversation_id = conversation.get("id") if isinstance(conversation, dict) else conversation
    if isinstance(conversation_id, str):
        if conversation_id not in store.conversations:
            return 0, not_found(f"Conversation with id '{conversation_id}' not found.", "conversation")
        return item_tokens(store.items[conversation_id]), None
    return 0, None


def _plan(body: dict[str, Any], controls: MockControls, items: list[dict[str, Any]], context: int) -> ResponsePlan:
    limit = body.get("max_output_tokens")
    budget = max(limit - controls.reasoning_tokens, 0) if isinstance(limit, int) else None
    pieces, cut = cut_to_budget(reply_pieces(controls), budget)
    text = "".join(pieces)
    instructions = body.get("instructions")
    input_tokens = context + item_tokens(items) + (count_tokens(instructions) if isinstance(instructions, str) else 0)
    item = {
        "id": new_id("msg"),
        "type": "message",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    now = int(time.time())
    conversation = body.get("conversation")
    response = {
        "id": new_id("resp"),
        "object": "response",
        "created_at": now,
        "status": "incomplete" if cut else "completed",
        "completed_at": None if cut else now,
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "max_output_tokens": limit if isinstance(limit, int) else None,
        "model": body["model"],
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "conversation": {"id": conversation} if isinstance(conversation, str) else conversation,
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None if controls.no_usage else _usage(input_tokens, count_tokens(text), controls),
        "user": None,
        "metadata": body.get("metadata") or {},
    }
    return ResponsePlan(response, tuple(pieces), item)


def _usage(input_tokens: int, visible: int, controls: MockControls) -> dict[str, Any]:
    output_tokens = visible + controls.reasoning_tokens
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": min(controls.cached_tokens, input_tokens)},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": controls.reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def _keep(
    store: MockStore, body: dict[str, Any], plan: ResponsePlan, items: list[dict[str, Any]], context: int
) -> None:
    response = plan.response
    conversation = response["conversation"]
    if isinstance(conversation, dict) and conversation.get("id") in store.items:
        store.items[conversation["id"]].extend([*items, plan.item])
    if body.get("store") is False:
        return
    store.responses[response["id"]] = response
    store.inputs[response["id"]] = items
    usage = response["usage"]
    tokens = usage["total_tokens"] if usage else context + item_tokens(items) + count_tokens("".join(plan.pieces))
    store.context[response["id"]] = tokens


def _json(payload: dict[str, Any], controls: MockControls) -> Response:
    if controls.malformed:
        text = json.dumps(payload)
        return Response(text[: len(text) // 2], media_type="application/json")
    return json_response(payload)


async def _events(plan: ResponsePlan, controls: MockControls, delay_s: float) -> AsyncGenerator[bytes, None]:
    first = True
    for event in _script(plan, controls):
        if event == b"abort":
            raise StreamAbortedError("mock upstream: drop_after reached, cutting the stream on purpose")
        if event == b"stall":
            await asyncio.sleep(STALL_SECONDS)
            continue
        if not first and delay_s > 0:
            await asyncio.sleep(delay_s)
        first = False
        yield event


def _script(plan: ResponsePlan, controls: MockControls) -> Iterator[bytes]:
    """OpenAI's event order for one text answer; ``abort``/``stall`` markers after the requested
    number of deltas (a limit past the last delta still fires before the terminal event)."""
    seq = itertools.count()
    response, item = plan.response, plan.item
    opening = {**response, "status": "in_progress", "output": [], "usage": None, "completed_at": None}
    opening["incomplete_details"] = None
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    part = item["content"][0]
    yield _sse(seq, "response.created", response=opening)
    yield _sse(seq, "response.in_progress", response=opening)
    yield _sse(seq, "response.output_item.added", output_index=0, item={**item, "status": "in_progress", "content": []})
    yield _sse(seq, "response.content_part.added", **at, part={**part, "text": ""})
    count = len(plan.pieces)
    for sent in range(count + 1):
        if controls.malformed and sent == count // 2:
            yield b"event: response.output_text.delta\ndata: {not json\n\n"
        if controls.drop_after is not None and sent == min(controls.drop_after, count):
            yield b"abort"
        if controls.stall_after is not None and sent == min(controls.stall_after, count):
            yield b"stall"
        if sent < count:
            yield _sse(seq, "response.output_text.delta", **at, delta=plan.pieces[sent], logprobs=[])
    yield _sse(seq, "response.output_text.done", **at, text=part["text"], logprobs=[])
    yield _sse(seq, "response.content_part.done", **at, part=part)
    yield _sse(seq, "response.output_item.done", output_index=0, item=item)
    terminal = "response.completed" if response["status"] == "completed" else "response.incomplete"
    yield _sse(seq, terminal, response=response)


def _sse(seq: Iterator[int], kind: str, **fields: Any) -> bytes:
    payload = {"type": kind, **fields, "sequence_number": next(seq)}
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _stored(request: Request) -> tuple[MockStore, dict[str, Any] | None]:
    store = store_of(request)
    return store, store.responses.get(request.path_params["response_id"])


def _missing(request: Request) -> Response:
    return not_found(f"Response with id '{request.path_params['response_id']}' not found.")


async def retrieve_response(request: Request) -> Response:
    _, response = _stored(request)
    return _missing(request) if response is None else json_response(response)


async def delete_response(request: Request) -> Response:
    store, response = _stored(request)
    if response is None:
        return _missing(request)
    del store.responses[response["id"]]
    return json_response({"id": response["id"], "object": "response", "deleted": True})


async def cancel_response(request: Request) -> Response:
    _, response = _stored(request)
    if response is None:
        return _missing(request)
    if not response.get("background"):
        return bad_request("Only responses created with background=true can be cancelled.")
    return json_response({**response, "status": "cancelled"})


async def list_input_items(request: Request) -> Response:
    store, response = _stored(request)
    if response is None:
        return _missing(request)
    return list_page(request, store.inputs[response["id"]])
