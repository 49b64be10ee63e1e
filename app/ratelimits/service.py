"""Rate-limit configuration, and the per-process cache the hot path reads it from."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.api_keys.service import resolve_scope_id, scope_owner
from app.audit import service as audit
from app.audit.schemas import Actor
from app.db import DB_ERRORS
from app.errors import NotFound
from app.kit.cache import TtlCache
from app.kit.crypto import new_id
from app.models import RateLimit
from app.ratelimits.limiter import Limit
from app.ratelimits.repository import RateLimitRepository
from app.ratelimits.schemas import RateLimitSet

log = logging.getLogger("tollgate.ratelimits")


async def set_limits(session: AsyncSession, data: RateLimitSet, actor: Actor) -> RateLimit:
    scope_id = await resolve_scope_id(session, data.scope, data.scope_id)
    repo = RateLimitRepository(session)
    row = await repo.find(data.scope, scope_id)
    action = "rate_limit.updated" if row is not None else "rate_limit.created"
    if row is None:
        row = await repo.create(RateLimit(id=new_id("rl"), scope=data.scope, scope_id=scope_id))
    row.rpm, row.tpm, row.concurrent = data.rpm, data.tpm, data.concurrent
    await session.flush()
    await _record(session, actor, action, row)
    return row


async def list_limits(session: AsyncSession, scope: str | None = None) -> Sequence[RateLimit]:
    return await RateLimitRepository(session).list_limits(scope)


async def delete_limits(session: AsyncSession, limit_id: str, actor: Actor) -> None:
    repo = RateLimitRepository(session)
    row = await repo.get_by_id(limit_id)
    if row is None:
        raise NotFound(f"No rate limit '{limit_id}'.", code="rate_limit_not_found")
    await _record(session, actor, "rate_limit.deleted", row)
    await session.delete(row)
    await session.flush()


async def _record(session: AsyncSession, actor: Actor, action: str, row: RateLimit) -> None:
    detail = {
        "scope": row.scope,
        "scope_id": row.scope_id,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "concurrent": row.concurrent,
    }
    owner = await scope_owner(session, row.scope, row.scope_id)
    await audit.record(session, actor, action, "rate_limit", row.id, owner_id=owner, detail=detail)


class LimitsCache:
    """Limits change rarely and are read on every request: each replica keeps them for a
    second, the same bound the auth cache puts on a revocation."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl_s: float) -> None:
        self._sessionmaker = sessionmaker
        self._limits: TtlCache[tuple[str, str, str | None], list[Limit]] = TtlCache(ttl_s)

    async def for_principal(self, p: Principal) -> list[Limit]:
        cache_key = (p.key_id, p.user_id, p.team_id)
        try:
            return await self._limits.get(cache_key, self._load)
        except DB_ERRORS:
            # Rate limits may fail open; the budget path fails closed on its own.
            log.warning("could not load rate limits; serving without them")
            return self._limits.last(cache_key, [])

    def invalidate(self) -> None:
        self._limits.clear()

    async def _load(self, scopes: tuple[str, str, str | None]) -> list[Limit]:
        async with self._sessionmaker() as session:
            rows = await RateLimitRepository(session).applicable(*scopes)
        return [Limit(r.scope, r.scope_id, r.rpm, r.tpm, r.concurrent) for r in rows]
