"""Usage reports: sums of the ledger per group and per time bucket, computed in SQL, and the
ledger itself, browsable by its owner and by admins."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.kit import buckets
from app.kit.pagination import CursorPage, PageParams, cursor_anchor, cursor_page
from app.models import UsageRecord
from app.usage.report_repository import (
    FIELDS,
    LedgerRepository,
    SourcePlan,
    Sums,
    UsageReportRepository,
    smallest_grain,
)
from app.usage.schemas import (
    DIMENSIONS,
    RecordQuery,
    ReportQuery,
    UsageBucket,
    UsageGroup,
    UsageRecordRead,
    UsageReport,
    UsageTotals,
    micros_to_usd,
)


def plan_sources(query: ReportQuery, bounds: Sequence[datetime]) -> SourcePlan:
    """The rollup answers whole UTC hours, which is exact whenever every bucket boundary inside
    the range is a whole UTC hour (any zone with a whole-hour offset). The partial hours at the
    range's edges, and zones with other offsets (Asia/Kolkata: +05:30), read the raw rows."""
    start, end = query.start, query.end
    if query.source == "raw" or not buckets.on_whole_hours(list(bounds[1:-1])):
        return SourcePlan(raw=((start, end),), rollup=None)
    first, last = buckets.ceil_hour(start), buckets.floor_hour(end)
    if first >= last:
        return SourcePlan(raw=((start, end),), rollup=None)
    edges = tuple(span for span in ((start, first), (last, end)) if span[0] < span[1])
    f = query.filters
    filtered = {c for c in ("user_id", "team_id", "api_key_id", "model", "endpoint", "status") if getattr(f, c)}
    grain = smallest_grain({DIMENSIONS[d] for d in query.group_by} | filtered)
    return SourcePlan(raw=edges, rollup=(first, last), grain=grain)


def encode_cursor(values: Sequence[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> tuple[str, ...]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError:
        values = None
    if not isinstance(values, list) or len(values) != width or not all(isinstance(v, str) for v in values):
        raise InvalidRequest("The cursor does not belong to a report with this group_by.", param="after")
    return tuple(values)


def _totals(sums: Sums) -> UsageTotals:
    values = {f: int(sums[f]) for f in FIELDS}
    return UsageTotals(**values, cost_usd=micros_to_usd(values["cost_micros"]))


async def usage_report(session: AsyncSession, query: ReportQuery) -> UsageReport:
    bounds = buckets.boundaries(query.start, query.end, query.bucket, ZoneInfo(query.timezone))
    plan = plan_sources(query, bounds)
    repo = UsageReportRepository(session, plan, query.filters)
    rows = await repo.page(query.group_by, query.after, query.limit, bounds[1:-1])
    # No rows: nothing in range, or a cursor past the last group (the range's totals still count).
    totals = rows[0].totals if rows else dict.fromkeys(FIELDS, 0)
    if not rows and query.after is not None:
        totals = await repo.totals()
    has_more = any(r.rank > query.limit for r in rows)
    groups: dict[tuple[str, ...], UsageGroup] = {}
    for r in rows:
        if r.rank > query.limit:
            continue
        group = groups.get(r.group)
        if group is None:
            labels = {d: (v if v or d != "team" else None) for d, v in zip(query.group_by, r.group, strict=True)}
            group = groups[r.group] = UsageGroup(group=labels, totals=_totals(r.group_sums), buckets=[])
        start, end = max(bounds[r.bucket], query.start), min(bounds[r.bucket + 1], query.end)
        group.buckets.append(UsageBucket(start_time=start, end_time=end, **_totals(r.sums).model_dump()))
    last = list(groups)[-1] if groups else None
    return UsageReport(
        start=query.start,
        end=query.end,
        bucket=query.bucket,
        timezone=query.timezone,
        group_by=list(query.group_by),
        source=plan.label,
        totals=_totals(totals),
        data=list(groups.values()),
        has_more=has_more,
        next_cursor=encode_cursor(last) if has_more and last is not None else None,
    )


def record_read(row: UsageRecord) -> UsageRecordRead:
    read = UsageRecordRead.model_validate(
        {c: getattr(row, c) for c in UsageRecordRead.model_fields if hasattr(row, c) and c not in ("id", "object")}
        | {"id": str(row.id), "cost_usd": micros_to_usd(row.cost_micros)}
    )
    return read


async def list_records(session: AsyncSession, query: RecordQuery, page: PageParams) -> CursorPage[UsageRecordRead]:
    repo = LedgerRepository(session)

    async def lookup(ref: str) -> UsageRecord | None:
        if not ref.isdigit():
            return None
        return await repo.get(int(ref), query.filters.user_id)

    anchor = await cursor_anchor(page, lookup, "usage record")
    rows, has_more = await repo.page(query.filters, (query.start, query.end), page, anchor)
    return cursor_page([record_read(r) for r in rows], has_more)
