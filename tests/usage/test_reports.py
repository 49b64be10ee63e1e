"""Reports against hand-computed sums: group-bys, buckets, time zones, DST, pagination, and the
rollup giving exactly what the raw rows give."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import InvalidRequest
from app.kit.buckets import Unit, boundaries
from app.kit.crypto import new_id
from app.models.usage_rollup import GRAIN_ALL, GRAIN_MODEL, GRAIN_USER
from app.usage.reports import decode_cursor, encode_cursor, plan_sources, usage_report
from app.usage.schemas import ReportQuery, UsageFilters, UsageReport
from tests.usage.helpers import row, write


def _at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def _query(
    user: str,
    start: datetime,
    end: datetime,
    bucket: Unit = "day",
    tz: str = "UTC",
    group_by: tuple[str, ...] = (),
    **extra: object,
) -> ReportQuery:
    filters = UsageFilters(user_id=user)
    return ReportQuery(start, end, bucket, tz, group_by, filters, **extra)  # type: ignore[arg-type]


def _series(report: UsageReport) -> dict[tuple[object, ...], list[tuple[str, int, int]]]:
    """{group values: [(bucket start, requests, cost)]}"""
    return {
        tuple(g.group.values()): [(b.start_time.isoformat(), b.requests, b.cost_micros) for b in g.buckets]
        for g in report.data
    }


async def test_group_by_model_and_status_by_day(db_session: AsyncSession) -> None:
    user, k1, k2 = new_id("user"), new_id("key"), new_id("key")
    await write(
        db_session,
        [
            row(_at(2026, 3, 1, 10), key=k1, user=user, model="m-a", cost=100),
            row(_at(2026, 3, 1, 11), key=k2, user=user, model="m-a", cost=250, prompt=7, cached=3),
            row(_at(2026, 3, 1, 12), key=k1, user=user, model="m-b", cost=40, status="upstream_error"),
            row(_at(2026, 3, 2, 0), key=k1, user=user, model="m-a", cost=5, reasoning=2),
            row(_at(2026, 3, 4, 0), key=k1, user=user, model="m-a", cost=999),  # outside the range
            row(_at(2026, 3, 1, 9), key=k1, user=new_id("user"), model="m-a", cost=77),  # someone else
        ],
    )
    report = await usage_report(db_session, _query(user, _at(2026, 3, 1), _at(2026, 3, 3), group_by=("model",)))
    assert _series(report) == {
        ("m-a",): [("2026-03-01T00:00:00+00:00", 2, 350), ("2026-03-02T00:00:00+00:00", 1, 5)],
        ("m-b",): [("2026-03-01T00:00:00+00:00", 1, 40)],
    }
    assert report.totals.requests == 4 and report.totals.cost_micros == 395
    assert report.totals.cost_usd == "0.000395"
    assert report.totals.prompt_tokens == 37 and report.totals.cached_tokens == 3
    assert report.totals.reasoning_tokens == 2 and report.totals.completion_tokens == 20
    assert report.source == "rollup"

    by_key_status = await usage_report(
        db_session, _query(user, _at(2026, 3, 1), _at(2026, 3, 3), bucket="month", group_by=("status", "key"))
    )
    expected = {
        ("ok", k1): [("2026-03-01T00:00:00+00:00", 2, 105)],
        ("ok", k2): [("2026-03-01T00:00:00+00:00", 1, 250)],
        ("upstream_error", k1): [("2026-03-01T00:00:00+00:00", 1, 40)],
    }
    assert _series(by_key_status) == expected
    # Buckets are clipped to the range asked for.
    assert by_key_status.data[0].buckets[0].end_time == _at(2026, 3, 3)


async def test_hour_buckets_and_partial_hours_at_the_edges(db_session: AsyncSession) -> None:
    user, key = new_id("user"), new_id("key")
    await write(
        db_session,
        [
            row(_at(2026, 3, 1, 10, 5), key=key, user=user, cost=1),  # before start
            row(_at(2026, 3, 1, 10, 20), key=key, user=user, cost=2),
            row(_at(2026, 3, 1, 10, 59), key=key, user=user, cost=4),
            row(_at(2026, 3, 1, 11, 30), key=key, user=user, cost=8),
            row(_at(2026, 3, 1, 12, 10), key=key, user=user, cost=16),
            row(_at(2026, 3, 1, 12, 40), key=key, user=user, cost=32),  # at/after end
        ],
    )
    query = _query(user, _at(2026, 3, 1, 10, 15), _at(2026, 3, 1, 12, 40), bucket="hour")
    report = await usage_report(db_session, query)
    assert report.source == "rollup+raw"
    assert _series(report) == {
        (): [
            ("2026-03-01T10:15:00+00:00", 2, 6),
            ("2026-03-01T11:00:00+00:00", 1, 8),
            ("2026-03-01T12:00:00+00:00", 1, 16),
        ]
    }


async def test_a_request_at_2330_utc_lands_on_the_local_day(db_session: AsyncSession) -> None:
    user, key = new_id("user"), new_id("key")
    await write(db_session, [row(_at(2026, 12, 1, 23, 30), key=key, user=user, cost=7)])
    span = (_at(2026, 11, 29), _at(2026, 12, 4))
    days = {
        "UTC": "2026-12-01T00:00:00+00:00",
        "Europe/Berlin": "2026-12-01T23:00:00+00:00",  # 00:30 on 2 December in Berlin
        "America/New_York": "2026-12-01T05:00:00+00:00",  # 18:30 on 1 December in New York
        "Asia/Kolkata": "2026-12-01T18:30:00+00:00",  # 05:00 on 2 December in Kolkata
    }
    for tz, day in days.items():
        report = await usage_report(db_session, _query(user, *span, tz=tz))
        assert _series(report) == {(): [(day, 1, 7)]}, tz
        assert report.source == ("raw" if tz == "Asia/Kolkata" else "rollup"), tz


async def test_dst_days_are_23_and_25_hours(db_session: AsyncSession) -> None:
    user, key = new_id("user"), new_id("key")
    # Berlin: summer time ends 25 October 2026 (25 hours), begins 29 March 2026 (23 hours).
    await write(
        db_session,
        [
            row(_at(2026, 10, 24, 22, 30), key=key, user=user, cost=1),  # 00:30 CEST 25 Oct
            row(_at(2026, 10, 25, 22, 30), key=key, user=user, cost=2),  # 23:30 CET 25 Oct
            row(_at(2026, 10, 25, 23, 0), key=key, user=user, cost=4),  # 00:00 CET 26 Oct
            row(_at(2026, 3, 28, 23, 0), key=key, user=user, cost=8),  # 00:00 CET 29 Mar
            row(_at(2026, 3, 29, 21, 59), key=key, user=user, cost=16),  # 23:59 CEST 29 Mar
        ],
    )
    autumn = await usage_report(db_session, _query(user, _at(2026, 10, 24), _at(2026, 10, 27), tz="Europe/Berlin"))
    [group] = autumn.data
    day = next(b for b in group.buckets if b.start_time == _at(2026, 10, 24, 22))
    assert (day.end_time - day.start_time, day.requests, day.cost_micros) == (timedelta(hours=25), 2, 3)
    spring = await usage_report(db_session, _query(user, _at(2026, 3, 28), _at(2026, 3, 31), tz="Europe/Berlin"))
    [group] = spring.data
    day = next(b for b in group.buckets if b.start_time == _at(2026, 3, 28, 23))
    assert (day.end_time - day.start_time, day.requests, day.cost_micros) == (timedelta(hours=23), 2, 24)


async def test_pages_of_groups_cover_every_group_once(db_session: AsyncSession) -> None:
    user = new_id("user")
    keys = sorted(new_id("key") for _ in range(5))
    rows = [row(_at(2026, 3, 1, h), key=k, user=user, model=m, cost=h) for h in range(3) for k in keys for m in "xy"]
    await write(db_session, rows)
    whole = await usage_report(db_session, _query(user, _at(2026, 3, 1), _at(2026, 3, 2), group_by=("key", "model")))
    assert len(whole.data) == 10 and not whole.has_more
    seen, after = [], None
    while True:
        page = await usage_report(
            db_session,
            _query(user, _at(2026, 3, 1), _at(2026, 3, 2), group_by=("key", "model"), limit=3, after=after),
        )
        assert page.totals == whole.totals  # totals are of the whole range, never of one page
        seen.extend(page.data)
        if not page.has_more:
            break
        assert page.next_cursor is not None
        after = decode_cursor(page.next_cursor, 2)
    assert seen == whole.data
    with pytest.raises(InvalidRequest):
        decode_cursor(encode_cursor(["only-one"]), 2)
    with pytest.raises(InvalidRequest):
        decode_cursor("not base64 json!", 2)


async def test_rollup_equals_raw_for_many_combinations(db_session: AsyncSession) -> None:
    user, team = new_id("user"), new_id("team")
    keys = [new_id("key") for _ in range(3)]
    endpoints = [new_id("chat"), new_id("embeddings")]  # this test's own, to filter on
    rng = random.Random(7)
    start = _at(2026, 10, 23)
    rows = [
        row(
            start + timedelta(seconds=rng.randrange(5 * 86400)),
            key=rng.choice(keys),
            user=user,
            team=rng.choice([team, None]),
            model=rng.choice(["m-a", "m-b", "m-c"]),
            endpoint=rng.choice(endpoints),
            status=rng.choice(["ok", "ok", "upstream_error", "lease_expired"]),
            prompt=rng.randrange(1000),
            cached=rng.randrange(10),
            completion=rng.randrange(500),
            reasoning=rng.randrange(50),
            cost=rng.randrange(100_000),
        )
        for _ in range(400)
    ]
    await write(db_session, rows)
    by_user, by_endpoint = UsageFilters(user_id=user), UsageFilters(endpoint=endpoints[0])
    cases = [
        (by_user, g) for g in [(), ("model",), ("key", "status"), ("team", "endpoint"), ("user", "model", "status")]
    ]
    cases += [(by_endpoint, g) for g in [(), ("model", "status"), ("endpoint",)]]
    spans = [(start, start + timedelta(days=5)), (start + timedelta(hours=7, minutes=13), _at(2026, 10, 26, 3, 47))]
    sources, grains = set(), set()
    units: tuple[Unit, ...] = ("hour", "day", "month")
    zones = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
    for (filters, group_by), unit, tz, span in itertools.product(cases, units, zones, spans):
        if unit == "hour" and len(group_by) > 1:
            continue  # hour buckets over five days: keep the test quick
        query = ReportQuery(span[0], span[1], unit, tz, group_by, filters)
        auto = await usage_report(db_session, query)
        raw = await usage_report(db_session, replace(query, source="raw"))
        sources.add(auto.source)
        grains.add(plan_sources(query, boundaries(span[0], span[1], unit, ZoneInfo(tz))).grain)
        assert raw.source == "raw"
        assert auto.model_dump(exclude={"source"}) == raw.model_dump(exclude={"source"}), (query, auto.source)
        mine = [r["created_at"] for r in rows if filters != by_endpoint or r["endpoint"] == endpoints[0]]
        assert auto.totals.requests == len([at for at in mine if span[0] <= at < span[1]])  # type: ignore[operator]
    assert sources == {"rollup", "rollup+raw", "raw"}
    assert grains == {GRAIN_ALL, GRAIN_MODEL, GRAIN_USER}
