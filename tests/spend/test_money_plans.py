"""The money functions find their rows through indexes, however many budgets and leases exist:
their plans are read from auto_explain, which logs the plan of every statement they run."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from asyncpg.exceptions import PostgresError, PostgresLogMessage
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import DatabaseSettings
from app.db import create_money_pool
from app.usage.pricing import TokenUsage
from app.usage.service import Settlement, record_values

MANY = 20_000


@pytest.fixture
async def conn(engine: AsyncEngine, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection inside a transaction that is rolled back, with MANY budgets and leases that
    belong to nobody in the tests, and statistics that say so."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the money functions are PostgreSQL's")
    pool = await create_money_pool(DatabaseSettings(url=database_url))
    async with pool.acquire() as connection:
        # The plans read here are the ones the money pool's connections use.
        assert await connection.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        try:
            await connection.execute("LOAD 'auto_explain'")
        except PostgresError as exc:  # a role that may not load it, or a server without contrib
            pytest.skip(f"auto_explain cannot be loaded here: {exc}")
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(
            "INSERT INTO budgets (id, scope, scope_id, period, timezone, limit_micros, spent_micros, "
            "reserved_micros, period_start, updated_at, created_at) "
            "SELECT 'budget_plan' || g, (ARRAY['key', 'user', 'team'])[g % 3 + 1], 'plan_' || g, 'monthly', "
            "'UTC', 1000000, 0, 0, now(), now(), now() FROM generate_series(1, $1) AS g",
            MANY,
        )
        await connection.execute(
            "INSERT INTO budget_leases (request_id, budget_ids, amount_micros, api_key_id, user_id, endpoint, "
            "model, prompt_tokens, output_cap, expires_at, created_at) "
            "SELECT 'req_plan' || g, '[]', 0, 'k', 'u', 'plan', 'm', 0, 0, now() + interval '1 hour', now() "
            "FROM generate_series(1, $1) AS g",
            MANY,
        )
        await connection.execute("ANALYZE budgets; ANALYZE budget_leases")
        await connection.execute(
            "SET auto_explain.log_min_duration = 0; "
            "SET auto_explain.log_nested_statements = on; SET client_min_messages = log"
        )
        try:
            yield connection
        finally:
            await connection.execute("RESET client_min_messages; RESET auto_explain.log_min_duration")
            await transaction.rollback()
    await pool.close()


async def _plans(conn: asyncpg.Connection, query: str, *args: object) -> str:
    logged: list[str] = []

    def listen(_conn: object, message: PostgresLogMessage) -> None:
        logged.append(str(message))

    conn.add_log_listener(listen)
    try:
        await conn.fetch(query, *args)
    finally:
        conn.remove_log_listener(listen)
    return "\n".join(logged)


async def test_a_reservation_looks_its_budgets_up_by_index(conn: asyncpg.Connection) -> None:
    # Past the fifth call, PL/pgSQL may switch a statement to a generic plan: both are checked.
    for n in range(7):
        item = {
            "request_id": f"req_plan_new{n}", "key_id": "plan_3", "user_id": "plan_1", "team_id": "plan_2",
            "endpoint": "plan", "model": "m", "prompt_tokens": 1, "in_rate": "1", "out_rate": "1",
            "max_cap": 1, "min_cap": 1, "choices": 1, "has_output": True,
        }  # fmt: skip
        plans = await _plans(conn, "SELECT * FROM tollgate_reserve_batch($1, now(), 60)", json.dumps([item]))
        assert "uq_budgets_scope_period" in plans
        assert "Seq Scan on budgets" not in plans


async def test_a_settlement_looks_its_leases_and_budgets_up_by_index(conn: asyncpg.Connection) -> None:
    settlement = Settlement("req_plan7", "plan", "m", TokenUsage(), 0, "ok", 200, 1, "upstream")
    items = [{"request_id": "req_plan7", "actual": 0, "usage": record_values("k", "u", None, settlement)}]
    plans = await _plans(conn, "SELECT tollgate_settle_batch($1, now())", json.dumps(items, default=str))
    assert "Seq Scan on budget_leases" not in plans
    assert "Seq Scan on budgets" not in plans
