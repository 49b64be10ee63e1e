from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.kit.repository import RepositoryBase
from app.models import UsageRecord


class UsageRepository(RepositoryBase[UsageRecord]):
    model = UsageRecord

    async def get_by_request_id(self, request_id: str) -> UsageRecord | None:
        return await self.get_one_or_none(select(UsageRecord).where(UsageRecord.request_id == request_id))

    async def list_for_key(self, api_key_id: str, limit: int = 100) -> Sequence[UsageRecord]:
        statement = (
            select(UsageRecord)
            .where(UsageRecord.api_key_id == api_key_id)
            .order_by(UsageRecord.created_at.desc(), UsageRecord.id.desc())
            .limit(limit)
        )
        return await self.get_all(statement)
