"""The base every repository builds on; repositories are the only place SQL is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models.base import Base

M = TypeVar("M", bound=Base)


class RepositoryBase(Generic[M]):
    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_id(self, id_: Any) -> M | None:
        return await self.session.get(self.model, id_)

    async def get_one_or_none(self, statement: Select[M]) -> M | None:
        result = await self.session.execute(statement)
        return result.scalar_one_or_none()

    async def get_all(self, statement: Select[M]) -> Sequence[M]:
        result = await self.session.execute(statement)
        return result.scalars().all()

    async def create(self, obj: M) -> M:
        self.session.add(obj)
        await self.session.flush()
        return obj

    def select(self) -> Select[M]:
        return select(self.model)
