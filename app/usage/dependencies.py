"""Query parameters of the usage routes, validated into report and ledger queries."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Query, Request

from app.errors import InvalidRequest
from app.kit.buckets import Unit
from app.kit.db_types import utcnow
from app.usage.reports import decode_cursor
from app.usage.schemas import DIMENSIONS, RecordQuery, ReportQuery, Source, UsageFilters

# The longest range each bucket size may cover: a page stays a bounded amount of work.
MAX_SPAN: dict[str, timedelta] = {"hour": timedelta(days=31), "day": timedelta(days=366), "month": timedelta(days=1831)}


def parse_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(
            f"Unknown time zone '{name}'; use an IANA name such as 'Europe/Berlin'.",
            param="timezone",
            code="invalid_timezone",
        ) from None


def parse_instant(value: str, zone: ZoneInfo, param: str) -> datetime:
    """ISO 8601. A date or a time without an offset is wall-clock time in ``zone``, so
    ``start=2026-11-01`` is local midnight."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"'{param}' is not an ISO 8601 date or time: '{value}'.", param=param) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


def _group_by(value: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in DIMENSIONS]
    if unknown or len(set(names)) != len(names):
        raise InvalidRequest(
            f"group_by takes distinct names from {', '.join(DIMENSIONS)}; got '{value}'.", param="group_by"
        )
    return names


@dataclass(frozen=True, slots=True)
class ReportParams:
    query: ReportQuery
    csv: bool

    def scoped(self, filters: UsageFilters) -> ReportQuery:
        return replace(self.query, filters=filters)


async def report_params(
    request: Request,
    start: Annotated[str, Query(description="ISO 8601; without an offset, local time in `timezone`")],
    end: Annotated[str | None, Query(description="Exclusive; defaults to now")] = None,
    bucket: Unit = "day",
    timezone: str = "UTC",
    group_by: Annotated[str, Query(description="Comma-separated: key, user, team, model, endpoint, status")] = "",
    model: str | None = None,
    endpoint: str | None = None,
    status: str | None = None,
    key: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Groups per page")] = 20,
    after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    source: Source = "auto",
    format: Literal["json", "csv"] | None = None,
) -> ReportParams:
    zone = parse_zone(timezone)
    begin = parse_instant(start, zone, "start")
    finish = parse_instant(end, zone, "end") if end is not None else utcnow()
    if finish <= begin:
        raise InvalidRequest("'end' must be after 'start'.", param="end")
    if finish - begin > MAX_SPAN[bucket]:
        raise InvalidRequest(f"A report by {bucket} covers at most {MAX_SPAN[bucket].days} days.", param="end")
    names = _group_by(group_by)
    filters = UsageFilters(api_key_id=key, model=model, endpoint=endpoint, status=status)
    cursor = decode_cursor(after, len(names)) if after is not None else None
    query = ReportQuery(begin, finish, bucket, timezone, names, filters, limit, cursor, source)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    return ReportParams(query, wants_csv)


async def record_params(
    start: str | None = None,
    end: str | None = None,
    model: str | None = None,
    status: str | None = None,
    key: str | None = None,
) -> RecordQuery:
    begin = parse_instant(start, ZoneInfo("UTC"), "start") if start is not None else None
    finish = parse_instant(end, ZoneInfo("UTC"), "end") if end is not None else None
    if begin is not None and finish is not None and finish <= begin:
        raise InvalidRequest("'end' must be after 'start'.", param="end")
    return RecordQuery(UsageFilters(api_key_id=key, model=model, status=status), begin, finish)


Report = Annotated[ReportParams, Depends(report_params)]
Records = Annotated[RecordQuery, Depends(record_params)]
