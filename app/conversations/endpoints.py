"""``/v1/conversations`` and their items, per user; plus the caller's own list, which OpenAI lacks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.api_keys.dependencies import CurrentPrincipal
from app.audit.dependencies import listed_owner
from app.conversations.dependencies import ConversationsDep
from app.conversations.schemas import Conversation, ConversationCreate, ConversationUpdate, ItemsCreate
from app.kit.pagination import CursorPage, Page, cursor_page

router = APIRouter(prefix="/v1/conversations", tags=["conversations"])


@router.post("")
async def create_conversation(
    data: ConversationCreate, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.create(principal.user_id, data)


@router.get("", response_model=CursorPage[Conversation])
async def list_conversations(
    owner: Annotated[str, listed_owner("conversation")], conversations: ConversationsDep, page: Page
) -> CursorPage[Conversation]:
    rows, has_more = await conversations.list(owner, page)
    return cursor_page([Conversation.of(r) for r in rows], has_more)


@router.get("/{conversation_id}")
async def retrieve_conversation(
    conversation_id: str, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.retrieve(principal, conversation_id)


@router.post("/{conversation_id}")
async def update_conversation(
    conversation_id: str, data: ConversationUpdate, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.update(principal, conversation_id, data)


@router.delete("/{conversation_id}")
async def delete_conversation(
    conversation_id: str, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.delete(principal, conversation_id)


@router.post("/{conversation_id}/items")
async def create_items(
    conversation_id: str,
    data: ItemsCreate,
    request: Request,
    principal: CurrentPrincipal,
    conversations: ConversationsDep,
) -> Response:
    query = request.query_params.multi_items()
    return await conversations.create_items(principal, conversation_id, data, query)


@router.get("/{conversation_id}/items")
async def list_items(
    conversation_id: str, request: Request, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.list_items(principal, conversation_id, request.query_params.multi_items())


@router.get("/{conversation_id}/items/{item_id}")
async def retrieve_item(
    conversation_id: str, item_id: str, request: Request, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    query = request.query_params.multi_items()
    return await conversations.retrieve_item(principal, conversation_id, item_id, query)


@router.delete("/{conversation_id}/items/{item_id}")
async def delete_item(
    conversation_id: str, item_id: str, principal: CurrentPrincipal, conversations: ConversationsDep
) -> Response:
    return await conversations.delete_item(principal, conversation_id, item_id)
