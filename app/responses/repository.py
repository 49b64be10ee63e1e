from __future__ import annotations

from sqlalchemy import delete, select

from app.kit.repository import RepositoryBase
from app.models import ResponseRecord


class ResponseRepository(RepositoryBase[ResponseRecord]):
    model = ResponseRecord

    async def get_owned(self, response_id: str, user_id: str) -> ResponseRecord | None:
        """Another user's response is as absent as an unknown one."""
        statement = select(ResponseRecord).where(ResponseRecord.id == response_id, ResponseRecord.user_id == user_id)
        return await self.get_one_or_none(statement)

    async def delete_by_id(self, response_id: str) -> None:
        await self.session.execute(delete(ResponseRecord).where(ResponseRecord.id == response_id))
