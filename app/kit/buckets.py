"""Report buckets: the hour, day or month boundaries of a time range in an IANA time zone.

Boundaries are computed here, as exact UTC instants, and handed to SQL; the database only
places each row between two of them. So a day is 23 or 25 hours on a DST change, a repeated
local hour is two buckets, and every backend and every source (raw rows or the hourly rollup)
buckets alike.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Unit = Literal["hour", "day", "month"]
HOUR = timedelta(hours=1)


def boundaries(start: datetime, end: datetime, unit: Unit, zone: ZoneInfo) -> list[datetime]:
    """[b0, b1, ..., bn] in UTC: b0 <= start is the start of the bucket holding ``start``, and bn
    is the first boundary at or after ``end``. Bucket i is [b_i, b_i+1)."""
    current = _floor(start, unit, zone)
    out = [current]
    while current < end:
        current = _next(current, unit, zone)
        out.append(current)
    return out


def bucket_count(start: datetime, end: datetime, unit: Unit, zone: ZoneInfo) -> int:
    return len(boundaries(start, end, unit, zone)) - 1


def on_whole_hours(instants: list[datetime]) -> bool:
    return all(b.minute == 0 and b.second == 0 and b.microsecond == 0 for b in instants)


def ceil_hour(instant: datetime) -> datetime:
    floor = floor_hour(instant)
    return floor if floor == instant else floor + HOUR


def floor_hour(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _floor(instant: datetime, unit: Unit, zone: ZoneInfo) -> datetime:
    local = instant.astimezone(zone)
    if unit == "hour":
        # Keeps the fold: in a repeated hour, each occurrence is its own bucket.
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
    if unit == "month":
        midnight = midnight.replace(day=1)
    return _utc(midnight.replace(tzinfo=None), zone)


def _next(boundary: datetime, unit: Unit, zone: ZoneInfo) -> datetime:
    if unit == "hour":
        return boundary + HOUR
    local = boundary.astimezone(zone).replace(tzinfo=None)
    if unit == "day":
        return _utc(local + timedelta(days=1), zone)
    return _utc(local.replace(year=local.year + (local.month == 12), month=local.month % 12 + 1), zone)


def _utc(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    # Wall-clock arithmetic, then the zone re-attached: DST-safe.
    return wall_clock.replace(tzinfo=zone).astimezone(UTC)
