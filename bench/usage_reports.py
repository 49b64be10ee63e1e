"""Usage reports at scale: loads synthetic ledger rows into a scratch PostgreSQL database with
COPY, builds the hourly rollup from them, then times the three typical dashboard queries through
the service code the routes use (app.usage.reports.usage_report).

    python bench/usage_reports.py --rows 10000000          # drops and re-creates the scratch DB
    python bench/usage_reports.py --reuse                   # time again without reloading

The scratch database (default tg_usage_bench on 127.0.0.1) is dropped and created: never point
it at a database that matters. Rows are skewed the way a gateway's traffic is: a few keys and
models carry most of it. They span --days days ending at --now, in time order.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alembic import command

from app.cli.runtime import alembic_config
from app.usage.reports import usage_report
from app.usage.schemas import ReportQuery, Source, UsageFilters, UsageReport

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small", "gpt-4.1", "o3", "gpt-5"]
MODEL_WEIGHTS = [40, 20, 12, 8, 10, 5, 3, 2]
ENDPOINTS = ["chat.completions", "embeddings", "responses", "completions"]
ENDPOINT_WEIGHTS = [70, 12, 15, 3]
STATUSES = ["ok", "upstream_error", "client_disconnected", "stream_error", "lease_expired"]
STATUS_WEIGHTS = [950, 25, 15, 5, 5]
COLUMNS = [
    "request_id",
    "api_key_id",
    "user_id",
    "team_id",
    "endpoint",
    "model",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
    "status",
    "http_status",
    "latency_ms",
    "usage_source",
    "created_at",
]
# The three grains of app/models/usage_rollup.py: a dimension a grain drops is ''.
ROLLUP_BACKFILL = """
INSERT INTO usage_rollup (grain, hour, api_key_id, model, endpoint, status, user_id, team_id, requests,
                          prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_micros)
SELECT g.grain, date_trunc('hour', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
       CASE WHEN g.grain = 0 THEN r.api_key_id ELSE '' END,
       CASE WHEN g.grain IN (0, 1) THEN r.model ELSE '' END,
       CASE WHEN g.grain IN (0, 1) THEN r.endpoint ELSE '' END,
       CASE WHEN g.grain IN (0, 1) THEN r.status ELSE '' END,
       CASE WHEN g.grain IN (0, 2) THEN r.user_id ELSE '' END,
       CASE WHEN g.grain IN (0, 2) THEN coalesce(r.team_id, '') ELSE '' END,
       count(*), sum(prompt_tokens), sum(cached_tokens), sum(completion_tokens), sum(reasoning_tokens),
       sum(cost_micros)
FROM usage_records AS r, (SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2) AS g
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
ORDER BY 2  -- in time order, as settlement writes it
"""
Principal = tuple[str, str, str | None]
SECONDARY = {
    "ix_usage_records_api_key_id_created_at": "api_key_id, created_at",
    "ix_usage_records_user_id_created_at": "user_id, created_at",
    "ix_usage_records_team_id_created_at": "team_id, created_at",
    "ix_usage_records_created_at": "created_at",
}


def principals(users: int) -> tuple[list[Principal], list[float]]:
    """(key, user, team) triples with Zipf-like weights: a few keys carry most of the traffic."""
    keys = []
    for u in range(users):
        team = f"team_{u % 20:02d}" if u % 5 else None
        for k in range(1 + u % 3):
            keys.append((f"key_{u:04d}_{k}", f"user_{u:04d}", team))
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(keys))]
    return keys, weights


def chunk(
    rng: random.Random, n: int, start: datetime, span_s: float, keys: list[Principal], weights: list[float]
) -> Iterator[tuple[object, ...]]:
    offsets = sorted(rng.random() * span_s for _ in range(n))
    who = rng.choices(keys, weights, k=n)
    models = rng.choices(MODELS, MODEL_WEIGHTS, k=n)
    endpoints = rng.choices(ENDPOINTS, ENDPOINT_WEIGHTS, k=n)
    statuses = rng.choices(STATUSES, STATUS_WEIGHTS, k=n)
    for i in range(n):
        key, user, team = who[i]
        prompt = rng.randrange(20, 4000)
        completion = rng.randrange(0, 1500)
        yield (
            f"req_{start.timestamp():.0f}_{i}",
            key,
            user,
            team,
            endpoints[i],
            models[i],
            prompt,
            prompt // 4 if i % 3 == 0 else 0,
            completion,
            completion // 3 if models[i].startswith("o") else 0,
            prompt * 2 + completion * 8,
            statuses[i],
            200,
            rng.randrange(50, 5000),
            "upstream",
            start + timedelta(seconds=offsets[i]),
        )


async def load(dsn: str, rows: int, days: int, now: datetime, seed: int) -> None:
    keys, weights = principals(200)
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    await conn.execute("SET maintenance_work_mem = '1GB'")
    # Indexes are built once after the load: far faster than maintaining them row by row.
    for name in SECONDARY:
        await conn.execute(f"DROP INDEX {name}")
    await conn.execute("ALTER TABLE usage_records DROP CONSTRAINT pk_usage_records")
    await conn.execute("ALTER TABLE usage_records DROP CONSTRAINT uq_usage_records_request_id")
    first = now - timedelta(days=days)
    month = datetime(first.year, first.month, 1)
    while month <= now.replace(tzinfo=None):
        await conn.execute("SELECT tollgate_usage_partition($1)", month.date())
        month = (month + timedelta(days=32)).replace(day=1)
    pieces = 40
    started = time.perf_counter()
    for p in range(pieces):
        n = rows // pieces + (1 if p < rows % pieces else 0)
        piece_start = first + timedelta(days=days) * p / pieces
        records = chunk(rng, n, piece_start, days * 86400 / pieces, keys, weights)
        await conn.copy_records_to_table("usage_records", records=records, columns=COLUMNS)
        print(f"  copied {(p + 1) * rows // pieces:>10,} rows  {time.perf_counter() - started:6.1f} s", flush=True)
    print("building indexes and the rollup ...", flush=True)
    await conn.execute("ALTER TABLE usage_records ADD CONSTRAINT pk_usage_records PRIMARY KEY (id, created_at)")
    await conn.execute(
        "ALTER TABLE usage_records ADD CONSTRAINT uq_usage_records_request_id UNIQUE (request_id, created_at)"
    )
    for name, columns in SECONDARY.items():
        await conn.execute(f"CREATE INDEX {name} ON usage_records ({columns})")

    # The rows bypassed settlement, so their rollup is built the way the migration backfills it.
    await conn.execute(ROLLUP_BACKFILL)
    await conn.execute("VACUUM ANALYZE usage_records")
    await conn.execute("VACUUM ANALYZE usage_rollup")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    await conn.close()


def dashboard(now: datetime) -> dict[str, ReportQuery]:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    everyone = UsageFilters()
    return {
        "30 days by day x model": ReportQuery(today - timedelta(days=29), now, "day", "UTC", ("model",), everyone),
        "this month by user": ReportQuery(month, now, "month", "UTC", ("user",), everyone, limit=100),
        "last 24 hours by hour": ReportQuery(now - timedelta(hours=24), now, "hour", "UTC", (), everyone),
    }


async def time_queries(url: str, now: datetime, runs: int, source: Source) -> dict[str, UsageReport]:
    engine = create_async_engine(url)
    async with engine.connect() as conn:
        sizes = "SELECT (SELECT count(*) FROM usage_records), (SELECT count(*) FROM usage_rollup)"
        counted: Any = (await conn.exec_driver_sql(sizes)).one()
        ledger, rollup = counted[0], counted[1]
    reports = {}
    print(f"ledger rows {ledger:,}, rollup rows {rollup:,}; source={source}, {runs} runs each after one warm-up")
    for name, query in dashboard(now).items():
        query = replace(query, source=source)
        timings = []
        for i in range(runs + 1):
            async with AsyncSession(engine) as session:
                started = time.perf_counter()
                report = await usage_report(session, query)
                elapsed = (time.perf_counter() - started) * 1000
            if i:
                timings.append(elapsed)
        reports[name] = report
        print(
            f"  {name:<24} median {statistics.median(timings):7.1f} ms  max {max(timings):7.1f} ms  "
            f"({report.source}; {len(report.data)} groups, {report.totals.requests:,} requests)"
        )
    await engine.dispose()
    return reports


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1:5432")
    parser.add_argument("--database", default="tg_usage_bench")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--now", default="2026-11-28T15:37:00+00:00", help="end of the data; queries are relative")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="keep the loaded database, only time")
    parser.add_argument("--raw", action="store_true", help="also time the same queries over the raw rows")
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now).astimezone(UTC)
    url = f"postgresql+asyncpg://postgres@{args.host}/{args.database}"
    dsn = f"postgresql://postgres@{args.host}/{args.database}"
    if not args.reuse:
        admin = await asyncpg.connect(f"postgresql://postgres@{args.host}/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{args.database}"')
        await admin.execute(f'CREATE DATABASE "{args.database}"')
        await admin.close()
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        print(f"loading {args.rows:,} rows over {args.days} days ending {now.isoformat()} ...", flush=True)
        await load(dsn, args.rows, args.days, now, args.seed)
    auto = await time_queries(url, now, args.runs, "auto")
    if args.raw:
        raw = await time_queries(url, now, max(1, args.runs // 5), "raw")
        for name, report in auto.items():
            same = report.model_dump(exclude={"source"}) == raw[name].model_dump(exclude={"source"})
            print(f"  {name:<24} rollup report == raw report: {same}")


if __name__ == "__main__":
    asyncio.run(main())
