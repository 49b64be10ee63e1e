"""Ledger writes (rows and their hourly rollup, always together) and partition upkeep."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.repository import RepositoryBase
from app.models import UsageRecord, UsageRequestId, UsageRollup
from app.models.usage_rollup import GRAIN_COLUMNS

MEASURES = ("prompt_tokens", "cached_tokens", "completion_tokens", "reasoning_tokens", "cost_micros")
GRAIN = ("grain", "hour", "api_key_id", "model", "endpoint", "status", "user_id", "team_id")


class UsageRepository(RepositoryBase[UsageRecord]):
    model = UsageRecord

    def _insert(self) -> Any:
        return pg_insert if self.session.get_bind().dialect.name == "postgresql" else sqlite_insert

    async def write(self, rows: Sequence[dict[str, object]]) -> int:
        """Writes the ledger rows whose request id is new, and adds exactly those to the rollup,
        in the caller's transaction; returns how many it wrote. A retried settlement, one that
        lost the race to the reaper, or a second replica's charge registers nothing and writes
        nothing (``UsageRequestId``). Called after taking leases and before charging budgets: the
        lock order of every money transaction."""
        unique = list({str(r["request_id"]): r for r in rows}.values())
        if not unique:
            return 0
        insert = self._insert()
        ids = [{"request_id": r["request_id"], "created_at": r["created_at"]} for r in unique]
        registered = insert(UsageRequestId).values(ids).on_conflict_do_nothing(index_elements=["request_id"])
        new = set((await self.session.execute(registered.returning(UsageRequestId.request_id))).scalars())
        fresh = [r for r in unique if r["request_id"] in new]
        if fresh:
            await self.session.execute(insert(UsageRecord).values(fresh))
            await self._roll_up(fresh)
        return len(fresh)

    async def _roll_up(self, rows: Sequence[dict[str, object]]) -> None:
        sums: dict[tuple[Any, ...], list[int]] = {}
        for row in rows:
            created = row["created_at"]
            assert isinstance(created, datetime)
            hour = created.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            labels = {**row, "team_id": row["team_id"] or ""}
            for grain, kept in GRAIN_COLUMNS.items():
                dims = tuple(labels[c] if c in kept else "" for c in GRAIN[2:])
                acc = sums.setdefault((grain, hour, *dims), [0] * (len(MEASURES) + 1))
                acc[0] += 1
                for i, name in enumerate(MEASURES, start=1):
                    value = row.get(name) or 0
                    assert isinstance(value, int)
                    acc[i] += value
        if not sums:
            return
        # Sorted like the PostgreSQL batch function sorts (code points, "C"): one lock order.
        values = [
            dict(zip(GRAIN, grain, strict=True)) | {"requests": acc[0]} | dict(zip(MEASURES, acc[1:], strict=True))
            for grain, acc in sorted(sums.items())
        ]
        statement = self._insert()(UsageRollup).values(values)
        added = {
            name: getattr(UsageRollup, name) + getattr(statement.excluded, name) for name in ("requests", *MEASURES)
        }
        await self.session.execute(statement.on_conflict_do_update(index_elements=list(GRAIN), set_=added))


class PartitionRepository:
    """PostgreSQL only: monthly partitions of usage_records, created ahead and dropped for
    retention by the functions of migration b7d41e9c2a60 (advisory-locked: safe on every replica)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def ensure(self, months: Sequence[date]) -> int:
        created = 0
        for month in months:
            result = await self.session.execute(text("SELECT tollgate_usage_partition(:m)"), {"m": month})
            created += bool(result.scalar_one())
        return created

    async def drop_before(self, before: datetime) -> int:
        result = await self.session.execute(text("SELECT tollgate_usage_drop_before(:b)"), {"b": before})
        return int(result.scalar_one())

    async def months(self) -> list[str]:
        statement = text(
            "SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'usage_records'::regclass ORDER BY c.relname"
        )
        return list((await self.session.execute(statement)).scalars())
