"""Threads and messages, kept per user. Services never commit: the request session does, once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach
from app.errors import InvalidRequest, NotFound
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.kit.pagination import PageParams, cursor_anchor
from app.models import Thread, ThreadMessage
from app.threads.repository import MessageRepository, ThreadRepository
from app.threads.schemas import MessageCreate, MessageUpdate, ThreadCreate, ThreadUpdate, chat_content


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


async def get_thread(
    session: AsyncSession,
    principal: Principal,
    thread_id: str,
    action: ObjectAction = "object.read",
    detail: dict[str, Any] | None = None,
) -> Thread:
    """The caller's thread; for an admin anyone's (support access, audited)."""
    repo = ThreadRepository(session)
    target = Target("thread", thread_id)
    thread = await reach(session, principal, target, lambda owner: repo.get_owned(thread_id, owner), action, detail)
    if thread is None:
        raise thread_not_found(thread_id)
    return thread


async def own_thread(session: AsyncSession, principal: Principal, thread_id: str) -> Thread:
    """The caller's own thread, admin or not: what a run or a chat it pays for may use."""
    thread = await ThreadRepository(session).get_owned(thread_id, principal.user_id)
    if thread is None:
        raise thread_not_found(thread_id)
    return thread


async def update_thread(session: AsyncSession, principal: Principal, thread_id: str, data: ThreadUpdate) -> Thread:
    thread = await get_thread(session, principal, thread_id, "object.updated")
    if "metadata" in data.model_fields_set:
        thread.meta = data.metadata or {}
    if "tool_resources" in data.model_fields_set:
        thread.tool_resources = data.tool_resources
    await session.flush()
    return thread


async def delete_thread(session: AsyncSession, principal: Principal, thread_id: str) -> None:
    await ThreadRepository(session).delete(await get_thread(session, principal, thread_id, "object.deleted"))


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
    thread = await get_thread(session, principal, thread_id, "object.updated", {"added": "message"})
    return await _add_message(session, thread, data)


async def get_message(
    session: AsyncSession,
    principal: Principal,
    thread_id: str,
    message_id: str,
    action: ObjectAction = "object.read",
) -> ThreadMessage:
    """The caller's message; for an admin anyone's (support access, audited)."""
    repo = MessageRepository(session)
    target = Target("thread.message", message_id)
    message = await reach(
        session, principal, target, lambda owner: repo.get_owned(thread_id, message_id, owner), action
    )
    if message is None:
        raise NotFound(f"No message found with id '{message_id}'.", param="message_id")
    return message


async def update_message(
    session: AsyncSession, principal: Principal, thread_id: str, message_id: str, data: MessageUpdate
) -> ThreadMessage:
    message = await get_message(session, principal, thread_id, message_id, "object.updated")
    if "metadata" in data.model_fields_set:
        message.meta = data.metadata or {}
    await session.flush()
    return message


async def delete_message(session: AsyncSession, principal: Principal, thread_id: str, message_id: str) -> None:
    message = await get_message(session, principal, thread_id, message_id, "object.deleted")
    await MessageRepository(session).delete(message)


async def list_messages(
    session: AsyncSession, principal: Principal, thread_id: str, params: PageParams, run_id: str | None
) -> tuple[list[ThreadMessage], bool]:
    thread = await get_thread(session, principal, thread_id, "object.listed", {"list": "messages"})
    repo = MessageRepository(session)
    anchor = await cursor_anchor(params, lambda id_: repo.get_owned(thread.id, id_, thread.user_id), "message")
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


class ThreadChats:
    """Chat completions that name one of the caller's threads (header ``X-Tollgate-Thread-Id``):
    the stored conversation is sent before the new messages, and once the call has succeeded
    the new user messages and the answer are stored together, so a failed call leaves the
    thread as it was. The request may add only user messages, after any system or developer
    instructions, which are sent but not stored."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def prepare(
        self, principal: Principal, thread_id: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], Callable[[str], Awaitable[None]]]:
        """The body to send, and what to call with the answer's text."""
        lead, new = _split_chat_messages(body)
        async with self.sessionmaker() as session:
            thread = await own_thread(session, principal, thread_id)
            if await ThreadRepository(session).has_active_run(thread.id):
                raise InvalidRequest(
                    f"Thread {thread.id} has an active run; wait for it to finish.",
                )
            history = await MessageRepository(session).conversation(thread.id)
        past = [{"role": m.role, "content": chat_content(m.content)} for m in history]

        async def record(answer: str) -> None:
            if not answer:
                return  # a tool call or an empty reply: nothing a thread message could hold
            async with self.sessionmaker.begin() as session:
                started = utcnow()
                for i, message in enumerate([*new, MessageCreate(role="assistant", content=answer)]):
                    await _add_message(session, thread, message, started + timedelta(microseconds=i))

        messages = body["messages"]
        return {**body, "messages": [*messages[:lead], *past, *messages[lead:]]}, record


def _split_chat_messages(body: dict[str, Any]) -> tuple[int, list[MessageCreate]]:
    """How many leading instructions the request has, and its new user messages."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("'messages' must be an array of message objects.", param="messages")
    if int(body.get("n") or 1) != 1:
        raise InvalidRequest("A request that names a thread must ask for one choice (n=1).", param="n")
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in ("system", "developer"):
        lead += 1
    new: list[MessageCreate] = []
    for index, message in enumerate(messages[lead:], start=lead):
        if message.get("role") != "user" or set(message) - {"role", "content"}:
            raise InvalidRequest(
                "A request that names a thread may add only user messages (role and content), "
                "after any system or developer messages.",
                param=f"messages[{index}]",
            )
        try:
            new.append(MessageCreate(role="user", content=message.get("content")))
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidRequest(f"Invalid content: {reason}.", param=f"messages[{index}].content") from None
    if not new:
        raise InvalidRequest("A request that names a thread must add a user message.", param="messages")
    return lead, new
