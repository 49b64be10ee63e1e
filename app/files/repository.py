from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select

from app.kit.ownership import Owner, owned_by
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import File


class FileRepository(RepositoryBase[File]):
    model = File

    async def get_owned(self, file_id: str, owner: Owner) -> File | None:
        """Another user's file is as absent as an unknown one."""
        return await self.get_one_or_none(select(File).where(File.id == file_id, owned_by(File.user_id, owner)))

    async def page(
        self, user_id: str, page: PageParams, anchor: tuple[datetime, str] | None, purpose: str | None
    ) -> tuple[Sequence[File], bool]:
        statement = select(File).where(File.user_id == user_id)
        if purpose is not None:
            statement = statement.where(File.purpose == purpose)
        return await keyset_page(self.session, statement, (File.created_at, File.id), page, anchor)

    async def remove(self, file_id: str) -> None:
        await self.session.execute(delete(File).where(File.id == file_id))

    async def owned_ids(self, file_ids: Sequence[str], user_id: str) -> set[str]:
        """Which of ``file_ids`` are the user's, in one query."""
        statement = select(File.id).where(File.id.in_(set(file_ids)), File.user_id == user_id)
        return set((await self.session.execute(statement)).scalars())
