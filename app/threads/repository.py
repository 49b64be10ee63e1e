from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select

from app.kit.db_types import utcnow
from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import Thread, ThreadMessage, ThreadRun
from app.models.thread_run import UNFINISHED_STATUSES


class ThreadRepository(RepositoryBase[Thread]):
    model = Thread

    async def get_owned(self, thread_id: str, owner: Owner) -> Thread | None:
        """Another user's thread is as absent as an unknown one."""
        return await self.get_one_or_none(select(Thread).where(Thread.id == thread_id, owned_by(Thread.user_id, owner)))

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None, metadata: Mapping[str, str]
    ) -> tuple[Sequence[Thread], bool]:
        statement = select(Thread).where(Thread.user_id == user_id)
        for key, value in metadata.items():
            statement = statement.where(Thread.meta[key].as_string() == value)
        return await keyset_page(self.session, statement, (Thread.created_at, Thread.id), page, anchor)

    async def has_active_run(self, thread_id: str) -> bool:
        statement = select(ThreadRun.id).where(
            ThreadRun.thread_id == thread_id,
            ThreadRun.status.in_(UNFINISHED_STATUSES),
            ThreadRun.expires_at > utcnow(),
        )
        return (await self.session.execute(statement.limit(1))).first() is not None

    async def delete(self, thread: Thread) -> None:
        """Its messages go with it (ON DELETE CASCADE)."""
        await self.session.delete(thread)
        await self.session.flush()


class MessageRepository(RepositoryBase[ThreadMessage]):
    model = ThreadMessage

    async def get_owned(self, thread_id: str, message_id: str, owner: Owner) -> ThreadMessage | None:
        statement = select(ThreadMessage).where(
            ThreadMessage.id == message_id,
            ThreadMessage.thread_id == thread_id,
            owned_by(ThreadMessage.user_id, owner),
        )
        return await self.get_one_or_none(statement)

    async def page(
        self, thread_id: str, page: PageParams, anchor: tuple[datetime, str] | None, run_id: str | None
    ) -> tuple[Sequence[ThreadMessage], bool]:
        statement = select(ThreadMessage).where(ThreadMessage.thread_id == thread_id)
        if run_id is not None:
            statement = statement.where(ThreadMessage.run_id == run_id)
        return await keyset_page(self.session, statement, (ThreadMessage.created_at, ThreadMessage.id), page, anchor)

    async def conversation(self, thread_id: str) -> Sequence[ThreadMessage]:
        """The whole thread, oldest first: what a run sends upstream."""
        statement = select(ThreadMessage).where(ThreadMessage.thread_id == thread_id)
        return await self.get_all(statement.order_by(ThreadMessage.created_at, ThreadMessage.id))

    async def delete(self, message: ThreadMessage) -> None:
        await self.session.delete(message)
        await self.session.flush()
