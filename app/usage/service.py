"""Writing the ledger. Each upstream call settles in one short transaction of its own."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.models import UsageRecord
from app.usage.pricing import TokenUsage
from app.usage.repository import UsageRepository

log = logging.getLogger("tollgate.usage")


@dataclass(slots=True)
class Settlement:
    request_id: str
    endpoint: str
    model: str
    tokens: TokenUsage
    cost_micros: int
    status: str
    http_status: int
    latency_ms: int
    usage_source: str
    upstream_request_id: str | None = None
    error_code: str | None = None


def to_record(principal: Principal, s: Settlement) -> UsageRecord:
    return UsageRecord(
        request_id=s.request_id,
        api_key_id=principal.key_id,
        user_id=principal.user_id,
        team_id=principal.team_id,
        endpoint=s.endpoint,
        model=s.model,
        prompt_tokens=s.tokens.prompt,
        cached_tokens=s.tokens.cached,
        completion_tokens=s.tokens.completion,
        reasoning_tokens=s.tokens.reasoning,
        cost_micros=s.cost_micros,
        status=s.status,
        http_status=s.http_status,
        latency_ms=s.latency_ms,
        upstream_request_id=s.upstream_request_id,
        usage_source=s.usage_source,
        error_code=s.error_code,
    )


async def settle(sessionmaker: async_sessionmaker[AsyncSession], principal: Principal, settlement: Settlement) -> None:
    """Idempotent: the request id is unique, so a retried settle is a no-op, not a double charge."""
    async with sessionmaker() as session:
        session.add(to_record(principal, settlement))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            if await UsageRepository(session).get_by_request_id(settlement.request_id) is None:
                raise
            log.info("settlement already recorded", extra={"settled_request_id": settlement.request_id})
