from __future__ import annotations

from sqlalchemy import delete, select

from app.kit.ownership import Owner, owned_by
from app.kit.repository import RepositoryBase
from app.models import ResponseRecord


class ResponseRepository(RepositoryBase[ResponseRecord]):
    model = ResponseRecord

    async def get_owned(self, response_id: str, owner: Owner) -> ResponseRecord | None:
        """Another user's response is as absent as an unknown one."""
        statement = select(ResponseRecord).where(
            ResponseRecord.id == response_id, owned_by(ResponseRecord.user_id, owner)
        )
        return await self.get_one_or_none(statement)

    async def delete_by_id(self, response_id: str) -> None:
        await self.session.execute(delete(ResponseRecord).where(ResponseRecord.id == response_id))
