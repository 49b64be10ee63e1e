from __future__ import annotations

from sqlalchemy import select, update

from app.kit.ownership import Owner, owned_by
from app.kit.repository import RepositoryBase
from app.models import Upload


class UploadRepository(RepositoryBase[Upload]):
    model = Upload

    async def get_owned(self, upload_id: str, owner: Owner) -> Upload | None:
        """Another user's upload is as absent as an unknown one."""
        statement = select(Upload).where(Upload.id == upload_id, owned_by(Upload.user_id, owner))
        return await self.get_one_or_none(statement)

    async def set_status(self, upload_id: str, status: str, file_id: str | None) -> None:
        statement = update(Upload).where(Upload.id == upload_id).values(status=status, file_id=file_id)
        await self.session.execute(statement)
