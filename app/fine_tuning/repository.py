from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import FineTunedModel, FineTunedModelGrant, FineTuningJob


class JobRepository(RepositoryBase[FineTuningJob]):
    model = FineTuningJob

    async def get_owned(self, job_id: str, owner: Owner) -> FineTuningJob | None:
        """Another user's job is as absent as an unknown one."""
        statement = select(FineTuningJob).where(FineTuningJob.id == job_id, owned_by(FineTuningJob.user_id, owner))
        return await self.get_one_or_none(statement)

    async def page(
        self, owner_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[FineTuningJob], bool]:
        statement = select(FineTuningJob).where(FineTuningJob.user_id == owner_id)
        return await keyset_page(self.session, statement, (FineTuningJob.created_at, FineTuningJob.id), page, anchor)

    async def claim_due(self, now: datetime, next_poll: datetime, limit: int) -> Sequence[FineTuningJob]:
        """Unsettled jobs due for a poll, claimed until ``next_poll``: rows another replica is
        claiming are skipped, so each job is asked about by one replica per interval."""
        statement = (
            select(FineTuningJob)
            .where(FineTuningJob.settled_at.is_(None), FineTuningJob.next_poll_at <= now)
            .order_by(FineTuningJob.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        jobs = await self.get_all(statement)
        if jobs:
            await self.session.execute(
                update(FineTuningJob)
                .where(FineTuningJob.id.in_([j.id for j in jobs]))
                .values(next_poll_at=next_poll)
                .execution_options(synchronize_session=False)
            )
        return jobs

    async def observe(self, job_id: str, status: str, job: dict[str, Any]) -> None:
        statement = (
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id)
            .values(status=status, job=job)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def mark_settled(self, job_id: str, trained: int, cost: int, model: str | None, now: datetime) -> bool:
        """True for the one caller that settles the job (a poller and a client's read may race)."""
        statement = (
            update(FineTuningJob)
            .where(FineTuningJob.id == job_id, FineTuningJob.settled_at.is_(None))
            .values(trained_tokens=trained, cost_micros=cost, fine_tuned_model=model, settled_at=now)
            .returning(FineTuningJob.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).first() is not None


class ModelRepository(RepositoryBase[FineTunedModel]):
    model = FineTunedModel

    async def add_new(self, model: FineTunedModel) -> FineTunedModel | None:
        """Records a model unless its name is taken (a model id is never reused upstream)."""
        if await self.get_by_id(model.id) is not None:
            return None
        return await self.create(model)

    async def all_models(self) -> Sequence[FineTunedModel]:
        return await self.get_all(select(FineTunedModel).order_by(FineTunedModel.id))

    async def all_grants(self) -> Sequence[FineTunedModelGrant]:
        statement = select(FineTunedModelGrant).order_by(FineTunedModelGrant.model, FineTunedModelGrant.scope)
        result = await self.session.execute(statement)
        return result.scalars().all()

    async def grant(self, model: str, scope: str, scope_id: str) -> FineTunedModelGrant:
        existing = await self.session.get(FineTunedModelGrant, (model, scope, scope_id))
        if existing is not None:
            return existing
        grant = FineTunedModelGrant(model=model, scope=scope, scope_id=scope_id)
        self.session.add(grant)
        await self.session.flush()
        return grant

    async def revoke(self, model: str, scope: str, scope_id: str) -> bool:
        statement = delete(FineTunedModelGrant).where(
            FineTunedModelGrant.model == model,
            FineTunedModelGrant.scope == scope,
            FineTunedModelGrant.scope_id == scope_id,
        )
        result = await self.session.execute(statement.returning(FineTunedModelGrant.model))
        return result.first() is not None
