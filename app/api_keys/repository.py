from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from app.kit.repository import RepositoryBase
from app.models import ApiKey, User


class ApiKeyRepository(RepositoryBase[ApiKey]):
    model = ApiKey

    async def get_active_with_user(self, digest: str, now: datetime) -> tuple[ApiKey, User] | None:
        statement = (
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None))
            .where(or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now))
        )
        row = (await self.session.execute(statement)).first()
        return (row[0], row[1]) if row else None

    async def exists_digest(self, digest: str) -> bool:
        result = await self.session.execute(select(ApiKey.id).where(ApiKey.digest == digest))
        return result.first() is not None

    async def list_keys(self, user_id: str | None = None, include_revoked: bool = True) -> Sequence[ApiKey]:
        statement = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if user_id is not None:
            statement = statement.where(ApiKey.user_id == user_id)
        if not include_revoked:
            statement = statement.where(ApiKey.revoked_at.is_(None))
        return await self.get_all(statement)

    async def count_admin_keys(self) -> int:
        statement = select(ApiKey.id).join(User, User.id == ApiKey.user_id).where(User.role == "admin")
        return len((await self.session.execute(statement.limit(1))).all())

    async def revoke_named_except(self, user_id: str, name: str, keep_digest: str, now: datetime) -> list[str]:
        """The ids of the keys it revoked."""
        result = await self.session.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user_id, ApiKey.name == name, ApiKey.digest != keep_digest)
            .where(ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey.id)
        )
        return list(result.scalars())

    async def touch_last_used(self, key_id: str, now: datetime, granularity: timedelta) -> None:
        """Conditional, so a busy key costs one write per granularity window, not one per request."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where(or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - granularity))
            .values(last_used_at=now)
        )
