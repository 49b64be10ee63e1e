"""The Conversations API of the mock upstream, kept in memory."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from app.mock_upstream.prelude import json_response
from app.mock_upstream.store import bad_request, input_items, list_page, new_id, not_found, store_of


async def create_conversation(request: Request) -> Response:
    body = request.state.mock_body if request.state.mock_body is not None else {}
    if not isinstance(body, dict):
        return bad_request("The body must be a JSON object.")
    items = input_items(body.get("items") or [])
    metadata = body.get("metadata") or {}
    if items is None or not isinstance(metadata, dict):
        return bad_request("Invalid 'items' or 'metadata'.")
    created, ident = int(time.time()), new_id("conv")
    conversation = {"id": ident, "object": "conversation", "created_at": created, "metadata": metadata}
    store = store_of(request)
    store.conversations[ident] = conversation
    store.items[ident] = items
    return json_response(conversation)


def _conversation(request: Request) -> dict[str, Any] | None:
    return store_of(request).conversations.get(request.path_params["conversation_id"])


def _missing(request: Request) -> Response:
    return not_found(f"Conversation with id '{request.path_params['conversation_id']}' not found.")


async def retrieve_conversation(request: Request) -> Response:
    conversation = _conversation(request)
    return _missing(request) if conversation is None else json_response(conversation)


async def update_conversation(request: Request) -> Response:
    conversation = _conversation(request)
    if conversation is None:
        return _missing(request)
    body = request.state.mock_body
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        return bad_request("Missing required parameter: 'metadata'.", "metadata")
    conversation["metadata"] = body["metadata"]
    return json_response(conversation)


async def delete_conversation(request: Request) -> Response:
    conversation = _conversation(request)
    if conversation is None:
        return _missing(request)
    store = store_of(request)
    del store.conversations[conversation["id"]]
    return json_response({"id": conversation["id"], "object": "conversation.deleted", "deleted": True})


async def create_items(request: Request) -> Response:
    conversation = _conversation(request)
    if conversation is None:
        return _missing(request)
    body = request.state.mock_body
    items = input_items(body.get("items")) if isinstance(body, dict) else None
    if not items:
        return bad_request("Missing required parameter: 'items'.", "items")
    store_of(request).items[conversation["id"]].extend(items)
    return json_response(
        {"object": "list", "data": items, "first_id": items[0]["id"], "last_id": items[-1]["id"], "has_more": False}
    )


async def list_items(request: Request) -> Response:
    conversation = _conversation(request)
    if conversation is None:
        return _missing(request)
    return list_page(request, store_of(request).items[conversation["id"]])


def _item(request: Request) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    items = store_of(request).items.get(request.path_params["conversation_id"], [])
    wanted = request.path_params["item_id"]
    return items, next((item for item in items if item["id"] == wanted), None)


async def retrieve_item(request: Request) -> Response:
    if _conversation(request) is None:
        return _missing(request)
    _, item = _item(request)
    if item is None:
        return not_found(f"Item with id '{request.path_params['item_id']}' not found.")
    return json_response(item)


async def delete_item(request: Request) -> Response:
    conversation = _conversation(request)
    if conversation is None:
        return _missing(request)
    items, item = _item(request)
    if item is None:
        return not_found(f"Item with id '{request.path_params['item_id']}' not found.")
    items.remove(item)
    return json_response(conversation)
