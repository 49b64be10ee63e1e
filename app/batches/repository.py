from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_, update

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import Batch


class BatchRepository(RepositoryBase[Batch]):
    model = Batch

    async def get_owned(self, batch_id: str, owner: Owner) -> Batch | None:
        """Another user's batch is as absent as an unknown one."""
        return await self.get_one_or_none(select(Batch).where(Batch.id == batch_id, owned_by(Batch.user_id, owner)))

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[Batch], bool]:
        statement = select(Batch).where(Batch.user_id == user_id)
        return await keyset_page(self.session, statement, (Batch.created_at, Batch.id), page, anchor)

    async def unsettled(self, after: tuple[datetime, str] | None, limit: int) -> Sequence[Batch]:
        """Batches whose money is still held, oldest first, from after ``after``."""
        statement = select(Batch).where(Batch.settled_at.is_(None))
        if after is not None:
            statement = statement.where(tuple_(Batch.created_at, Batch.id) > tuple_(*after))
        return await self.get_all(statement.order_by(Batch.created_at, Batch.id).limit(limit))

    async def observe(self, batch_id: str, status: str, snapshot: dict[str, Any]) -> None:
        """What upstream last said; a settled batch keeps the snapshot it was settled with."""
        statement = (
            update(Batch)
            .where(Batch.id == batch_id, Batch.settled_at.is_(None))
            .values(status=status, snapshot=snapshot)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def claim(self, batch_id: str, status: str, snapshot: dict[str, Any], now: datetime) -> bool:
        """Marks the batch settled; only the one caller that flips it may settle it."""
        statement = (
            update(Batch)
            .where(Batch.id == batch_id, Batch.settled_at.is_(None))
            .values(status=status, snapshot=snapshot, settled_at=now)
            .returning(Batch.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).first() is not None
