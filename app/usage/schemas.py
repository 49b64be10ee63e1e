from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel

from app.kit.buckets import Unit
from app.kit.schemas import ReadSchema

# What a report can group by, and the ledger column behind each.
DIMENSIONS: dict[str, str] = {
    "key": "api_key_id",
    "user": "user_id",
    "team": "team_id",
    "model": "model",
    "endpoint": "endpoint",
    "status": "status",
}
Source = Literal["auto", "raw"]


def micros_to_usd(micros: int) -> str:
    return f"{Decimal(micros).scaleb(-6):.6f}"


@dataclass(frozen=True, slots=True)
class UsageFilters:
    """Exact-match filters; None is no filter. ``user_id`` is always set for a non-admin caller."""

    user_id: str | None = None
    team_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    endpoint: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class ReportQuery:
    start: datetime  # UTC, inclusive
    end: datetime  # UTC, exclusive
    bucket: Unit
    timezone: str
    group_by: tuple[str, ...]
    filters: UsageFilters
    limit: int = 20
    after: tuple[str, ...] | None = None  # the last group of the previous page
    source: Source = "auto"


@dataclass(frozen=True, slots=True)
class RecordQuery:
    filters: UsageFilters
    start: datetime | None = None
    end: datetime | None = None


class UsageTotals(BaseModel):
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    cost_usd: str = "0.000000"


class UsageBucket(UsageTotals):
    start_time: datetime
    end_time: datetime


class UsageGroup(BaseModel):
    object: Literal["usage.group"] = "usage.group"
    # Only the grouped dimensions; a row without a team reports team as null.
    group: dict[str, str | None]
    totals: UsageTotals
    buckets: list[UsageBucket]  # buckets with at least one request, in time order


class UsageReport(BaseModel):
    object: Literal["usage.report"] = "usage.report"
    start: datetime
    end: datetime
    bucket: Unit
    timezone: str
    group_by: list[str]
    # Which rows answered: "rollup", "raw", or "rollup+raw" (partial hours at the edges).
    source: str
    totals: UsageTotals  # every group of the range, not just this page
    data: list[UsageGroup]
    has_more: bool
    next_cursor: str | None


class UsageRecordRead(ReadSchema):
    object: Literal["usage.record"] = "usage.record"
    id: str
    request_id: str
    api_key_id: str
    user_id: str
    team_id: str | None
    endpoint: str
    model: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cost_micros: int
    cost_usd: str
    unit: str | None
    units: int | None
    status: str
    http_status: int
    latency_ms: int
    usage_source: str
    error_code: str | None
    upstream: str | None
    created_at: datetime
