"""Several Tollgate processes sharing one PostgreSQL (and one Redis): budgets and rate limits
hold in total, and a process killed with -9 loses no money."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import openai
import pytest
import redis.asyncio as aioredis
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tests.fixtures.live_server import LiveServer
from tests.fixtures.processes import TollgateProcess, replica_env
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, lease_count, usage_rows
from tests.spend.test_concurrency import WORST_CASE, run_burst

REDIS_URL = "redis://127.0.0.1:6379/14"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count to three."}]


@pytest.fixture
def env(settings: Settings, mock_upstream: LiveServer) -> dict[str, str]:
    return replica_env(settings.database.url, mock_upstream.url, TOLLGATE_LEASE_TTL_S="2", REDIS_URL=REDIS_URL)


@pytest.fixture
async def fresh_redis() -> AsyncIterator[None]:
    client = aioredis.from_url(REDIS_URL)
    await client.flushdb()
    yield
    await client.aclose()


@pytest.fixture
def replicas(tmp_path: Path, env: dict[str, str], fresh_redis: None) -> Iterator[list[TollgateProcess]]:
    processes = [TollgateProcess(tmp_path, env, "--skip-migrations", wait=False) for _ in range(3)]
    try:
        for process in processes:
            process.wait_ready()
        yield processes
    finally:
        for process in processes:
            process.stop()


async def _team(admin: Admin, name: str, members: int) -> tuple[str, list[Tenant]]:
    team = (await admin.http.post("/admin/teams", json={"name": name})).json()
    return team["id"], [await admin.tenant(team=name) for _ in range(members)]


async def test_budget_holds_across_three_processes(
    replicas: list[TollgateProcess], admin: Admin, engine: AsyncEngine
) -> None:
    team_id, tenants = await _team(admin, "replica-budget-team", 3)
    limit = 10 * WORST_CASE
    budget_id = await admin.budget("team", team_id, f"{limit / 1_000_000:.6f}")

    bursts = [run_burst(process.url, [tenants[i]], 50) for i, process in enumerate(replicas)]
    outcomes = sum((await asyncio.gather(*bursts)), Counter[str]())

    assert set(outcomes) <= {"ok", "team_budget_exceeded"}
    assert outcomes["ok"] >= 10
    await _until(lambda: lease_count(engine), 0)
    rows = [r for t in tenants for r in await usage_rows(engine, t.key_id)]
    state = await admin.budget_state(budget_id)
    assert len(rows) == outcomes["ok"]
    assert state["spent_micros"] == sum(r.cost_micros for r in rows) <= limit
    assert state["reserved_micros"] == 0


async def test_rpm_lets_exactly_n_through_across_three_processes(replicas: list[TollgateProcess], admin: Admin) -> None:
    team_id, tenants = await _team(admin, "replica-rpm-team", 3)
    limited = await admin.http.put("/admin/rate-limits", json={"scope": "team", "scope_id": team_id, "rpm": 25})
    assert limited.status_code == 200
    await asyncio.sleep(1.1)  # the limits cache TTL
    if time.time() % 60 > 45:  # keep the whole burst inside one fixed window
        await asyncio.sleep(61 - time.time() % 60)

    refusals: list[openai.RateLimitError] = []

    async def one(i: int) -> str:
        client = tenants[i % 3].client(replicas[i % 3].url)
        try:
            await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
        except openai.RateLimitError as exc:
            refusals.append(exc)
            return str(exc.code)
        return "ok"

    outcomes = Counter(await asyncio.gather(*(one(i) for i in range(60))))
    assert outcomes == Counter({"ok": 25, "rate_limit_exceeded": 35})
    assert all(r.response.headers["retry-after"].isdigit() for r in refusals)
    assert {r.response.headers["x-ratelimit-limit-requests"] for r in refusals} == {"25"}


async def test_kill_9_mid_stream_then_restart_settles_orphaned_leases(
    tmp_path: Path, env: dict[str, str], admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    victim = TollgateProcess(tmp_path, env, "--skip-migrations")
    client = tenant.client(victim.url, timeout=30)
    slow = {"mock": {"chunk_delay_ms": 200, "words": 50}}

    async def stream() -> None:
        with contextlib.suppress(openai.APIError):
            response = await client.chat.completions.create(
                model=PRICED_MODEL, messages=MESSAGES, max_tokens=60, stream=True, extra_body=slow
            )
            async for _ in response:
                pass

    tasks = [asyncio.create_task(stream()) for _ in range(5)]
    try:
        await _until(lambda: lease_count(engine, tenant.key_id), 5)
    finally:
        victim.kill9()  # also when the wait failed: a test must never leave a server running
    await asyncio.gather(*tasks)
    reserved = (await admin.budget_state(budget_id))["reserved_micros"]
    assert reserved > 0, "the killed process could not settle"

    restarted = TollgateProcess(tmp_path, env, "--skip-migrations")
    try:
        await _until(lambda: lease_count(engine, tenant.key_id), 0, timeout_s=15)
        state = await admin.budget_state(budget_id)
        rows = await usage_rows(engine, tenant.key_id)
        assert {r.status for r in rows} == {"lease_expired"} and len(rows) == 5
        assert state["spent_micros"] == reserved == sum(r.cost_micros for r in rows)
        assert state["reserved_micros"] == 0
        again = tenant.client(restarted.url)
        await again.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
    finally:
        restarted.stop()


async def _until(probe: Callable[[], Awaitable[int]], expected: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await probe()
        if value == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected}, still {value}")
