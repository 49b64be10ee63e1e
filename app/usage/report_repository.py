"""The SQL of usage reports and ledger browsing.

A report reads one "source": the hourly rollup for the whole hours of the range plus the raw
rows of the partial hours at its edges, or the raw rows alone. Both are projected onto the same
columns, so every report query is written once and the two sources are interchangeable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Select,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import Subquery

from app.kit.db_types import UTCDateTime
from app.kit.pagination import PageParams, keyset_page
from app.models import UsageRecord, UsageRollup
from app.models.usage_rollup import GRAIN_ALL, GRAIN_COLUMNS, GRAIN_MODEL, GRAIN_USER
from app.usage.repository import MEASURES
from app.usage.schemas import DIMENSIONS, UsageFilters

FIELDS = ("requests", *MEASURES)
Range = tuple[datetime, datetime]
Sums = dict[str, int]


@dataclass(frozen=True, slots=True)
class SourcePlan:
    raw: tuple[Range, ...]  # time ranges read from the ledger rows
    rollup: Range | None  # whole UTC hours read from the rollup
    grain: int = GRAIN_ALL  # the rollup grain read

    @property
    def label(self) -> str:
        if self.rollup is None:
            return "raw"
        return "rollup+raw" if self.raw else "rollup"


def smallest_grain(columns: set[str]) -> int:
    """The smallest rollup grain that keeps every ledger column a report groups or filters by."""
    for grain in (GRAIN_MODEL, GRAIN_USER):
        if columns <= GRAIN_COLUMNS[grain]:
            return grain
    return GRAIN_ALL


def _raw_part(span: Range, filters: UsageFilters) -> Select[Any]:
    r = UsageRecord
    statement = select(
        r.created_at.label("ts"),
        r.api_key_id,
        r.user_id,
        func.coalesce(r.team_id, "").label("team_id"),
        r.model,
        r.endpoint,
        r.status,
        literal(1, BigInteger).label("requests"),
        *(cast(getattr(r, m), BigInteger).label(m) for m in MEASURES),
    ).where(r.created_at >= span[0], r.created_at < span[1])
    filtered: Select[Any] = _filtered(statement, r, filters)
    return filtered


def _rollup_part(span: Range, grain: int, filters: UsageFilters) -> Select[Any]:
    u = UsageRollup
    statement = select(
        u.hour.label("ts"),
        u.api_key_id,
        u.user_id,
        u.team_id,
        u.model,
        u.endpoint,
        u.status,
        u.requests,
        *(getattr(u, m) for m in MEASURES),
    ).where(u.grain == grain, u.hour >= span[0], u.hour < span[1])
    filtered: Select[Any] = _filtered(statement, u, filters)
    return filtered


def _filtered(statement: Any, table: Any, filters: UsageFilters) -> Any:
    for name in ("user_id", "team_id", "api_key_id", "model", "endpoint", "status"):
        value = getattr(filters, name)
        if value is not None:
            statement = statement.where(getattr(table, name) == value)
    return statement


class UsageReportRepository:
    def __init__(self, session: AsyncSession, plan: SourcePlan, filters: UsageFilters) -> None:
        self.session = session
        parts = [_raw_part(span, filters) for span in plan.raw]
        if plan.rollup is not None:
            parts.append(_rollup_part(plan.rollup, plan.grain, filters))
        self.source: Subquery = (parts[0] if len(parts) == 1 else union_all(*parts)).subquery("usage_source")
        self.postgres = session.get_bind().dialect.name == "postgresql"

    def _sums(self) -> list[ColumnElement[int]]:
        return [cast(func.coalesce(func.sum(self.source.c[f]), 0), BigInteger).label(f) for f in FIELDS]

    def _dims(self, group_by: Sequence[str]) -> list[ColumnElement[str]]:
        return [self.source.c[DIMENSIONS[d]] for d in group_by]

    def bucket_index(self, thresholds: Sequence[datetime]) -> ColumnElement[int]:
        """Which bucket a row's instant falls in: 0 before thresholds[0], k from thresholds[k-1]."""
        ts = self.source.c.ts
        if not thresholds:
            return literal(0)
        if self.postgres:
            bounds = bindparam("bounds", list(thresholds), type_=ARRAY(DateTime(timezone=True)))
            return func.width_bucket(ts, bounds)
        whens = [(ts < literal(b, UTCDateTime()), i) for i, b in enumerate(thresholds)]
        return case(*whens, else_=len(thresholds))

    async def totals(self) -> Sums:
        row = (await self.session.execute(select(*self._sums()))).one()
        return dict(row._mapping)

    async def page(
        self, group_by: Sequence[str], after: Sequence[str] | None, limit: int, thresholds: Sequence[datetime]
    ) -> list[PageRow]:
        """One scan of the source for a whole page: the non-empty buckets of the first ``limit + 1``
        groups after ``after`` (groups in the order of their values), each row carrying its
        group's totals and the totals of the whole range (every group, cursor or not)."""
        dims = self._dims(group_by)
        index = self.bucket_index(thresholds).label("bucket")
        b = select(*dims, index, *self._sums()).group_by(*dims, index).subquery("b")

        def big(column: ColumnElement[Any]) -> ColumnElement[int]:
            return cast(column, BigInteger)

        t = select(b, *(big(func.sum(b.c[f]).over()).label(f"t_{f}") for f in FIELDS)).subquery("t")
        keys = [t.c[c.key] for c in dims if c.key is not None]
        ranked = select(
            t,
            *(big(func.sum(t.c[f]).over(partition_by=keys)).label(f"g_{f}") for f in FIELDS),
            func.dense_rank().over(order_by=keys).label("rank"),
        )
        if after is not None:
            ranked = ranked.where(tuple_(*keys) > tuple_(*(literal(v) for v in after)))
        p = ranked.subquery("p")
        out = [p.c[k.key] for k in keys]
        statement = select(p).where(p.c["rank"] <= limit + 1).order_by(*out, p.c.bucket)
        rows = (await self.session.execute(statement)).mappings().all()
        return [
            PageRow(
                group=tuple(r[k.key] for k in keys),
                bucket=int(r["bucket"]),
                rank=int(r["rank"]),
                sums={f: int(r[f]) for f in FIELDS},
                group_sums={f: int(r[f"g_{f}"]) for f in FIELDS},
                totals={f: int(r[f"t_{f}"]) for f in FIELDS},
            )
            for r in rows
        ]


@dataclass(frozen=True, slots=True)
class PageRow:
    group: tuple[str, ...]
    bucket: int
    rank: int  # the group's place on the page, from 1
    sums: Sums
    group_sums: Sums
    totals: Sums


class LedgerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, record_id: int, user_id: str | None) -> UsageRecord | None:
        statement = select(UsageRecord).where(UsageRecord.id == record_id)
        if user_id is not None:
            statement = statement.where(UsageRecord.user_id == user_id)
        return (await self.session.execute(statement)).scalars().first()

    async def page(
        self,
        filters: UsageFilters,
        span: tuple[datetime | None, datetime | None],
        page: PageParams,
        anchor: tuple[datetime, Any] | None,
    ) -> tuple[Sequence[UsageRecord], bool]:
        r = UsageRecord
        statement = _filtered(select(r), r, filters)
        if span[0] is not None:
            statement = statement.where(r.created_at >= span[0])
        if span[1] is not None:
            statement = statement.where(r.created_at < span[1])
        return await keyset_page(self.session, statement, (r.created_at, r.id), page, anchor)
