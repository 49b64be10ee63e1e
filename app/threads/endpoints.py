"""``/v1/threads`` and their messages: served by Tollgate itself, per user."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Request

from app.api_keys.dependencies import AdminPrincipal, CurrentPrincipal
from app.audit import support
from app.audit.dependencies import listed_owner
from app.db import SessionDep
from app.kit.pagination import CursorPage, Page, cursor_page
from app.kit.schemas import Deleted
from app.threads import service
from app.threads.schemas import Message, MessageCreate, MessageUpdate, Thread, ThreadCreate, ThreadUpdate

router = APIRouter(prefix="/v1/threads", tags=["threads"])
admin_router = APIRouter(prefix="/admin/users", tags=["admin: threads"])

_METADATA_FILTER = re.compile(r"^metadata\[(.+)\]$")


def _metadata_filter(request: Request) -> dict[str, str]:
    """``?metadata[customer]=acme`` keeps the threads whose metadata has that pair."""
    found = (_METADATA_FILTER.match(name) for name in request.query_params)
    return {m.group(1): request.query_params[m.group(0)] for m in found if m}


@router.post("", response_model=Thread)
async def create_thread(data: ThreadCreate, principal: CurrentPrincipal, session: SessionDep) -> Thread:
    return Thread.of(await service.create_thread(session, principal, data))


@router.get("", response_model=CursorPage[Thread])
async def list_threads(
    request: Request, owner: Annotated[str, listed_owner("thread")], session: SessionDep, page: Page
) -> CursorPage[Thread]:
    rows, has_more = await service.list_threads(session, owner, page, _metadata_filter(request))
    return cursor_page([Thread.of(r) for r in rows], has_more)


@router.get("/{thread_id}", response_model=Thread)
async def get_thread(thread_id: str, principal: CurrentPrincipal, session: SessionDep) -> Thread:
    return Thread.of(await service.get_thread(session, principal, thread_id))


@router.post("/{thread_id}", response_model=Thread)
async def update_thread(thread_id: str, data: ThreadUpdate, principal: CurrentPrincipal, session: SessionDep) -> Thread:
    return Thread.of(await service.update_thread(session, principal, thread_id, data))


@router.delete("/{thread_id}", response_model=Deleted)
async def delete_thread(thread_id: str, principal: CurrentPrincipal, session: SessionDep) -> Deleted:
    await service.delete_thread(session, principal, thread_id)
    return Deleted(id=thread_id, object="thread.deleted")


@router.post("/{thread_id}/messages", response_model=Message)
async def create_message(
    thread_id: str, data: MessageCreate, principal: CurrentPrincipal, session: SessionDep
) -> Message:
    return Message.of(await service.create_message(session, principal, thread_id, data))


@router.get("/{thread_id}/messages", response_model=CursorPage[Message])
async def list_messages(
    thread_id: str, principal: CurrentPrincipal, session: SessionDep, page: Page, run_id: str | None = None
) -> CursorPage[Message]:
    rows, has_more = await service.list_messages(session, principal, thread_id, page, run_id)
    return cursor_page([Message.of(r) for r in rows], has_more)


@router.get("/{thread_id}/messages/{message_id}", response_model=Message)
async def get_message(thread_id: str, message_id: str, principal: CurrentPrincipal, session: SessionDep) -> Message:
    return Message.of(await service.get_message(session, principal, thread_id, message_id))


@router.post("/{thread_id}/messages/{message_id}", response_model=Message)
async def update_message(
    thread_id: str, message_id: str, data: MessageUpdate, principal: CurrentPrincipal, session: SessionDep
) -> Message:
    return Message.of(await service.update_message(session, principal, thread_id, message_id, data))


@router.delete("/{thread_id}/messages/{message_id}", response_model=Deleted)
async def delete_message(thread_id: str, message_id: str, principal: CurrentPrincipal, session: SessionDep) -> Deleted:
    await service.delete_message(session, principal, thread_id, message_id)
    return Deleted(id=message_id, object="thread.message.deleted")


@admin_router.get("/{user_ref}/threads", response_model=CursorPage[Thread])
async def list_user_threads(
    user_ref: str, request: Request, admin: AdminPrincipal, session: SessionDep, page: Page
) -> CursorPage[Thread]:
    """Support work: a user's threads, by user id or name; the same as ``GET /v1/threads?user=``."""
    owner = await support.list_owner(session, admin, "thread", user_ref)
    rows, has_more = await service.list_threads(session, owner, page, _metadata_filter(request))
    return cursor_page([Thread.of(r) for r in rows], has_more)
