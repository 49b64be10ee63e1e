from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import Assistant


class AssistantRepository(RepositoryBase[Assistant]):
    model = Assistant

    async def get_owned(self, assistant_id: str, owner: Owner) -> Assistant | None:
        """Another user's assistant is as absent as an unknown one."""
        statement = select(Assistant).where(Assistant.id == assistant_id, owned_by(Assistant.user_id, owner))
        return await self.get_one_or_none(statement)

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[Assistant], bool]:
        statement = select(Assistant).where(Assistant.user_id == user_id)
        return await keyset_page(self.session, statement, (Assistant.created_at, Assistant.id), page, anchor)

    async def delete(self, assistant: Assistant) -> None:
        await self.session.delete(assistant)
        await self.session.flush()
