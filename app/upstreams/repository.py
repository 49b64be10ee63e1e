from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.kit.repository import RepositoryBase
from app.models import UpstreamTargetRow


class UpstreamRepository(RepositoryBase[UpstreamTargetRow]):
    model = UpstreamTargetRow

    async def all(self) -> Sequence[UpstreamTargetRow]:
        return await self.get_all(select(UpstreamTargetRow).order_by(UpstreamTargetRow.name))

    async def delete(self, row: UpstreamTargetRow) -> None:
        await self.session.delete(row)
        await self.session.flush()
