from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import delete, or_, select, update

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import VectorStore


class VectorStoreRepository(RepositoryBase[VectorStore]):
    model = VectorStore

    async def get_owned(self, store_id: str, owner: Owner) -> VectorStore | None:
        """Another user's store is as absent as an unknown one."""
        statement = select(VectorStore).where(VectorStore.id == store_id, owned_by(VectorStore.user_id, owner))
        return await self.get_one_or_none(statement)

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[VectorStore], bool]:
        statement = select(VectorStore).where(VectorStore.user_id == user_id)
        return await keyset_page(self.session, statement, (VectorStore.created_at, VectorStore.id), page, anchor)

    async def refresh(self, store_id: str, snapshot: dict[str, Any], usage_bytes: int) -> None:
        statement = (
            update(VectorStore)
            .where(VectorStore.id == store_id)
            .values(snapshot=snapshot, usage_bytes=usage_bytes)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def remove(self, store_id: str) -> None:
        await self.session.execute(delete(VectorStore).where(VectorStore.id == store_id))

    async def unmetered(self, day: date, limit: int) -> Sequence[VectorStore]:
        """Stores whose storage on ``day`` is not charged yet, oldest first."""
        statement = (
            select(VectorStore)
            .where(or_(VectorStore.metered_on.is_(None), VectorStore.metered_on < day))
            .order_by(VectorStore.created_at, VectorStore.id)
            .limit(limit)
        )
        return await self.get_all(statement)

    async def mark_metered(self, store_id: str, day: date) -> None:
        statement = (
            update(VectorStore)
            .where(VectorStore.id == store_id)
            .values(metered_on=day)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)
