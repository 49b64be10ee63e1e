"""In-memory state of the mock's stored objects (responses, conversations, their items), and the
helpers both APIs share: ids, input normalisation, token counts, OpenAI's list pages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.mock_upstream.chat import count_tokens
from app.mock_upstream.prelude import error_body, json_response


@dataclass
class MockStore:
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Input plus output tokens of each response: what continuing from it costs in input.
    context: dict[str, int] = field(default_factory=dict)
    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def store_of(request: Request) -> MockStore:
    store = request.app.state.store
    assert isinstance(store, MockStore)
    return store


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def not_found(message: str, param: str | None = None) -> Response:
    return json_response(error_body(message, "invalid_request_error", param=param), 404)


def bad_request(message: str, param: str | None = None) -> Response:
    return json_response(error_body(message, "invalid_request_error", param=param), 400)


def input_items(value: Any) -> list[dict[str, Any]] | None:
    """OpenAI's accepted ``input`` shapes as stored items with ids; None when invalid."""
    if isinstance(value, str):
        value = [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        return None
    items: list[dict[str, Any]] = []
    for item in value:
        if item.get("type", "message") == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                return None
            items.append(_message(role, item.get("content")))
        else:
            items.append({"id": item.get("id") or new_id("item"), **item})
    return items


def _message(role: str, content: Any) -> dict[str, Any]:
    kind = "output_text" if role == "assistant" else "input_text"
    parts = [{"type": kind, "text": content}] if isinstance(content, str) else content
    return {"id": new_id("msg"), "type": "message", "status": "completed", "role": role, "content": parts or []}


def item_tokens(items: list[dict[str, Any]]) -> int:
    """The mock's own accounting of input items: 3 tokens per item plus its text."""
    total = 0
    for item in items:
        total += 3
        for part in item.get("content") or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                total += count_tokens(part["text"])
        for key in ("output", "arguments"):
            if isinstance(item.get(key), str):
                total += count_tokens(item[key])
    return total


def list_page(request: Request, items: list[dict[str, Any]]) -> Response:
    """OpenAI's cursor list over ``items`` (oldest first): ``order`` (desc by default), ``limit``, ``after``."""
    order = request.query_params.get("order", "desc")
    raw_limit = request.query_params.get("limit", "20")
    if order not in ("asc", "desc") or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        return bad_request("Invalid 'order' or 'limit'.")
    ordered = items if order == "asc" else items[::-1]
    after = request.query_params.get("after")
    if after is not None:
        ids = [item["id"] for item in ordered]
        if after not in ids:
            return bad_request(f"No item with id '{after}'.", "after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[: int(raw_limit)]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": len(ordered) > len(data),
        }
    )
