"""Threads and messages, kept per user. Services never commit: the request session does, once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import Principal
from app.errors import NotFound
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.kit.pagination import PageParams, cursor_anchor
from app.models import Thread, ThreadMessage
from app.threads.repository import MessageRepository, ThreadRepository
from app.threads.schemas import MessageCreate, MessageUpdate, ThreadCreate, ThreadUpdate


def thread_not_found(thread_id: str) -> NotFound:
    return NotFound(f"No thread found with id '{thread_id}'.", param="thread_id")


async def create_thread(session: AsyncSession, principal: Principal, data: ThreadCreate) -> Thread:
    thread = Thread(
        id=new_id("thread"), user_id=principal.user_id, tool_resources=data.tool_resources, meta=data.metadata or {}
    )
    await ThreadRepository(session).create(thread)
    started = utcnow()
    for i, message in enumerate(data.messages):
        # Strictly increasing, so the conversation keeps the order it was sent in.
        await _add_message(session, thread, message, started + timedelta(microseconds=i))
    return thread


async def get_thread(session: AsyncSession, principal: Principal, thread_id: str) -> Thread:
    thread = await ThreadRepository(session).get_owned(thread_id, principal.user_id)
    if thread is None:
        raise thread_not_found(thread_id)
    return thread


async def update_thread(session: AsyncSession, principal: Principal, thread_id: str, data: ThreadUpdate) -> Thread:
    thread = await get_thread(session, principal, thread_id)
    if "metadata" in data.model_fields_set:
        thread.meta = data.metadata or {}
    if "tool_resources" in data.model_fields_set:
        thread.tool_resources = data.tool_resources
    await session.flush()
    return thread


async def delete_thread(session: AsyncSession, principal: Principal, thread_id: str) -> None:
    await ThreadRepository(session).delete(await get_thread(session, principal, thread_id))


async def list_threads(
    session: AsyncSession, user_id: str, params: PageParams, metadata: Mapping[str, str]
) -> tuple[list[Thread], bool]:
    """Newest first by default. Tollgate's own addition: OpenAI never let a caller list its threads."""
    repo = ThreadRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, user_id), "thread")
    rows, has_more = await repo.page(user_id, params, anchor, metadata)
    return list(rows), has_more


async def create_message(
    session: AsyncSession, principal: Principal, thread_id: str, data: MessageCreate
) -> ThreadMessage:
    thread = await get_thread(session, principal, thread_id)
    return await _add_message(session, thread, data)


async def get_message(session: AsyncSession, principal: Principal, thread_id: str, message_id: str) -> ThreadMessage:
    message = await MessageRepository(session).get_owned(thread_id, message_id, principal.user_id)
    if message is None:
        raise NotFound(f"No message found with id '{message_id}'.", param="message_id")
    return message


async def update_message(
    session: AsyncSession, principal: Principal, thread_id: str, message_id: str, data: MessageUpdate
) -> ThreadMessage:
    message = await get_message(session, principal, thread_id, message_id)
    if "metadata" in data.model_fields_set:
        message.meta = data.metadata or {}
    await session.flush()
    return message


async def delete_message(session: AsyncSession, principal: Principal, thread_id: str, message_id: str) -> None:
    await MessageRepository(session).delete(await get_message(session, principal, thread_id, message_id))


async def list_messages(
    session: AsyncSession, principal: Principal, thread_id: str, params: PageParams, run_id: str | None
) -> tuple[list[ThreadMessage], bool]:
    thread = await get_thread(session, principal, thread_id)
    repo = MessageRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(thread.id, id_, principal.user_id), "message")
    rows, has_more = await repo.page(thread.id, params, anchor, run_id)
    return list(rows), has_more


async def _add_message(
    session: AsyncSession, thread: Thread, data: MessageCreate, created_at: datetime | None = None
) -> ThreadMessage:
    now = utcnow()
    message = ThreadMessage(
        id=new_id("msg"),
        thread_id=thread.id,
        user_id=thread.user_id,
        role=data.role,
        content=data.stored_content(),
        status="completed",
        attachments=data.attachments,
        completed_at=now,
        meta=data.metadata or {},
        created_at=created_at or now,
    )
    return await MessageRepository(session).create(message)
