"""Calendar-aligned budget periods in a given time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

# Lifetime budgets never roll over: their period starts at the epoch.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_bounds(period: str, timezone: str, now: datetime) -> tuple[datetime, datetime | None]:
    """(start, end) in UTC of the period containing ``now``; end is None for lifetime.

    Boundaries are local midnights, so a daily budget in Europe/Berlin resets at 00:00 Berlin
    time, and DST days are 23 or 25 hours long.
    """
    if period == "lifetime":
        return EPOCH, None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        start, end = midnight, _add_days(midnight, 1)
    elif period == "weekly":
        start = _add_days(midnight, -midnight.weekday())  # weeks start on Monday (ISO 8601)
        end = _add_days(start, 7)
    elif period == "monthly":
        start = midnight.replace(day=1)
        end = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _utc(start, zone), _utc(end, zone)


def _add_days(local_midnight: datetime, days: int) -> datetime:
    # Wall-clock arithmetic: add calendar days, then re-attach the zone (DST-safe).
    naive = local_midnight.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=local_midnight.tzinfo)


def _utc(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)
