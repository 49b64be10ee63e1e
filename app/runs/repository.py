from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import ThreadRun, ThreadRunStep
from app.models.thread_run import UNFINISHED_STATUSES


class RunRepository(RepositoryBase[ThreadRun]):
    model = ThreadRun

    async def get_owned(self, thread_id: str, run_id: str, owner: Owner) -> ThreadRun | None:
        statement = select(ThreadRun).where(
            ThreadRun.id == run_id, ThreadRun.thread_id == thread_id, owned_by(ThreadRun.user_id, owner)
        )
        return await self.get_one_or_none(statement)

    async def active_on(self, thread_id: str) -> ThreadRun | None:
        statement = select(ThreadRun).where(
            ThreadRun.thread_id == thread_id,
            ThreadRun.status.in_(UNFINISHED_STATUSES),
        )
        return await self.get_one_or_none(statement.limit(1))

    async def expire_overdue(self, thread_id: str, now: datetime) -> None:
        """Runs past ``expires_at`` that never finished (tool outputs never sent, or a worker
        that stopped mid-run) become ``expired``, as OpenAI's do; the thread is free again."""
        statement = (
            update(ThreadRun)
            .where(
                ThreadRun.thread_id == thread_id,
                ThreadRun.status.in_(UNFINISHED_STATUSES),
                ThreadRun.expires_at < now,
            )
            .values(status="expired", required_action=None)
            .returning(ThreadRun.id)
        )
        expired = list((await self.session.execute(statement)).scalars())
        if expired:
            await RunStepRepository(self.session).close_open(expired, "expired", now)

    async def page(
        self, thread_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[ThreadRun], bool]:
        statement = select(ThreadRun).where(ThreadRun.thread_id == thread_id)
        return await keyset_page(self.session, statement, (ThreadRun.created_at, ThreadRun.id), page, anchor)


class RunStepRepository(RepositoryBase[ThreadRunStep]):
    model = ThreadRunStep

    async def get_owned(self, run_id: str, step_id: str, user_id: str) -> ThreadRunStep | None:
        statement = select(ThreadRunStep).where(
            ThreadRunStep.id == step_id, ThreadRunStep.run_id == run_id, ThreadRunStep.user_id == user_id
        )
        return await self.get_one_or_none(statement)

    async def open_tool_step(self, run_id: str) -> ThreadRunStep | None:
        """The function calls a run waits on (at most one step at a time)."""
        statement = select(ThreadRunStep).where(
            ThreadRunStep.run_id == run_id, ThreadRunStep.type == "tool_calls", ThreadRunStep.status == "in_progress"
        )
        return await self.get_one_or_none(statement.limit(1))

    async def close_open(self, run_ids: Sequence[str], status: str, now: datetime) -> None:
        """A run that ends unfinished (cancelled, expired) ends its open steps the same way."""
        stamp = {"cancelled": "cancelled_at", "expired": "expired_at", "failed": "failed_at"}[status]
        statement = (
            update(ThreadRunStep)
            .where(ThreadRunStep.run_id.in_(run_ids), ThreadRunStep.status == "in_progress")
            .values({"status": status, stamp: now})
        )
        await self.session.execute(statement)

    async def page(
        self, run_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[ThreadRunStep], bool]:
        statement = select(ThreadRunStep).where(ThreadRunStep.run_id == run_id)
        return await keyset_page(self.session, statement, (ThreadRunStep.created_at, ThreadRunStep.id), page, anchor)
