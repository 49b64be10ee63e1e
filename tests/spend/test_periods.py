"""Budget periods: calendar-aligned in a time zone, identical in Python and in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.periods import EPOCH, period_bounds

CASES = [
    ("daily", "UTC", datetime(2026, 11, 22, 23, 30, tzinfo=UTC)),
    ("daily", "Europe/Berlin", datetime(2026, 3, 29, 12, 0, tzinfo=UTC)),  # a 23-hour day
    ("daily", "America/New_York", datetime(2026, 11, 22, 3, 0, tzinfo=UTC)),  # still the 21st there
    ("weekly", "Europe/Berlin", datetime(2026, 3, 29, 12, 0, tzinfo=UTC)),
    ("weekly", "UTC", datetime(2026, 11, 23, 0, 0, tzinfo=UTC)),  # a Monday, exactly at the boundary
    ("monthly", "Asia/Tokyo", datetime(2026, 11, 30, 16, 0, tzinfo=UTC)),  # already December in Tokyo
    ("monthly", "UTC", datetime(2026, 12, 31, 23, 59, tzinfo=UTC)),
    ("lifetime", "UTC", datetime(2026, 11, 22, tzinfo=UTC)),
]


def test_known_boundaries() -> None:
    assert period_bounds("daily", "America/New_York", CASES[2][2]) == (
        datetime(2026, 11, 21, 5, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 5, 0, tzinfo=UTC),
    )
    start, end = period_bounds("daily", "Europe/Berlin", CASES[1][2])
    assert end is not None and (end - start).total_seconds() == 23 * 3600
    assert period_bounds("monthly", "Asia/Tokyo", CASES[5][2])[0] == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert period_bounds("weekly", "UTC", CASES[4][2])[0] == CASES[4][2]
    assert period_bounds("lifetime", "UTC", CASES[7][2]) == (EPOCH, None)


@pytest.mark.parametrize(("period", "zone", "now"), CASES)
async def test_postgres_agrees_with_python(engine: AsyncEngine, period: str, zone: str, now: datetime) -> None:
    async with engine.connect() as conn:
        start = (
            await conn.execute(text("SELECT tollgate_period_start(:p, :z, :n)"), {"p": period, "z": zone, "n": now})
        ).scalar_one()
    assert start == period_bounds(period, zone, now)[0]
