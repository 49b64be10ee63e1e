"""What a finished call costs and how it is written to the ledger (by ``app.spend``), and the
ledger's partition upkeep."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import UsageSettings
from app.kit.db_types import utcnow
from app.usage.pricing import TokenUsage
from app.usage.repository import PartitionRepository

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
    upstream: str | None = None
    # Calls billed by the piece: what was counted (see usage_record.UNIT_*) and how many.
    unit: str | None = None
    units: int | None = None


def record_values(key_id: str, user_id: str, team_id: str | None, s: Settlement) -> dict[str, object]:
    return {
        "request_id": s.request_id,
        "api_key_id": key_id,
        "user_id": user_id,
        "team_id": team_id,
        "endpoint": s.endpoint,
        "model": s.model,
        "prompt_tokens": s.tokens.prompt,
        "cached_tokens": s.tokens.cached,
        "completion_tokens": s.tokens.completion,
        "reasoning_tokens": s.tokens.reasoning,
        "cost_micros": s.cost_micros,
        "status": s.status,
        "http_status": s.http_status,
        "latency_ms": s.latency_ms,
        "upstream_request_id": s.upstream_request_id,
        "usage_source": s.usage_source,
        "error_code": s.error_code,
        "upstream": s.upstream,
        "unit": s.unit,
        "units": s.units,
        "created_at": utcnow(),
    }


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


class LedgerMaintenance:
    """PostgreSQL: creates the ledger's monthly partitions ahead and applies retention. Runs on
    every replica at start and periodically; the database functions serialise it."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: UsageSettings) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings

    async def maintain(self, now: datetime | None = None) -> tuple[int, int]:
        """(partitions created, partitions dropped)."""
        now = (now or utcnow()).astimezone(UTC)
        this_month = date(now.year, now.month, 1)
        months = [add_months(this_month, k) for k in range(self.settings.partitions_ahead + 1)]
        async with self.sessionmaker.begin() as session:
            repo = PartitionRepository(session)
            created = await repo.ensure(months)
            dropped = 0
            if self.settings.retention_months is not None:
                keep_from = add_months(this_month, -self.settings.retention_months)
                dropped = await repo.drop_before(datetime(keep_from.year, keep_from.month, 1, tzinfo=UTC))
        if dropped:
            log.warning("usage retention dropped %d monthly partitions", dropped)
        return created, dropped
