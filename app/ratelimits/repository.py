from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import and_, or_, select

from app.kit.repository import RepositoryBase
from app.models import RateLimit


class RateLimitRepository(RepositoryBase[RateLimit]):
    model = RateLimit

    async def applicable(self, key_id: str, user_id: str, team_id: str | None) -> Sequence[RateLimit]:
        scopes = [and_(RateLimit.scope == "key", RateLimit.scope_id == key_id)]
        scopes.append(and_(RateLimit.scope == "user", RateLimit.scope_id == user_id))
        if team_id is not None:
            scopes.append(and_(RateLimit.scope == "team", RateLimit.scope_id == team_id))
        return await self.get_all(select(RateLimit).where(or_(*scopes)).order_by(RateLimit.scope))

    async def find(self, scope: str, scope_id: str) -> RateLimit | None:
        return await self.get_one_or_none(
            select(RateLimit).where(RateLimit.scope == scope, RateLimit.scope_id == scope_id)
        )

    async def list_limits(self, scope: str | None) -> Sequence[RateLimit]:
        statement = select(RateLimit).order_by(RateLimit.scope, RateLimit.scope_id)
        if scope is not None:
            statement = statement.where(RateLimit.scope == scope)
        return await self.get_all(statement)
