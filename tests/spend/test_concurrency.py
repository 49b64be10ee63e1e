"""Exactness under concurrency: 200 requests at once against a budget that pays for about 10."""

from __future__ import annotations

import asyncio
from collections import Counter

import openai
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy.ext.asyncio import AsyncEngine

from app.kit.tokens import count_chat_prompt
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, lease_count, usage_rows

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Count to three."}]
CAP = 50
WORST_CASE = count_chat_prompt(PRICED_MODEL, list(MESSAGES)) * 2 + CAP * 8


async def _one(client: openai.AsyncOpenAI, i: int) -> str:
    mock = {"delay_ms": 30, "chunk_delay_ms": 5, "words": 20}
    try:
        if i % 2:
            stream = await client.chat.completions.create(
                model=PRICED_MODEL, messages=MESSAGES, max_tokens=CAP, stream=True, extra_body={"mock": mock}
            )
            _ = [chunk async for chunk in stream]
        else:
            await client.chat.completions.create(
                model=PRICED_MODEL, messages=MESSAGES, max_tokens=CAP, extra_body={"mock": mock}
            )
    except openai.RateLimitError as exc:
        return str(exc.code)
    return "ok"


async def run_burst(url: str, tenants: list[Tenant], total: int) -> Counter[str]:
    clients = [t.client(url, timeout=60) for t in tenants]
    outcomes = await asyncio.gather(*(_one(clients[i % len(clients)], i) for i in range(total)))
    return Counter(outcomes)


async def test_concurrent_requests_never_overshoot(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    team = (await admin.http.post("/admin/teams", json={"name": "burst-team"})).json()
    tenants = [await admin.tenant(team=team["name"]) for _ in range(4)]
    limit = 10 * WORST_CASE
    budget_id = await admin.budget("team", team["id"], f"{limit / 1_000_000:.6f}")

    outcomes = await run_burst(tollgate.url, tenants, 200)

    assert set(outcomes) <= {"ok", "team_budget_exceeded"}
    assert outcomes["ok"] >= 10, "at least the budget's worth of worst cases gets through"
    for _ in range(100):
        if await lease_count(engine) == 0:
            break
        await asyncio.sleep(0.05)
    rows = [r for t in tenants for r in await usage_rows(engine, t.key_id)]
    state = await admin.budget_state(budget_id)
    assert len(rows) == outcomes["ok"], "every admitted request settled exactly once"
    assert {r.status for r in rows} == {"ok"}
    assert state["reserved_micros"] == 0
    assert await lease_count(engine) == 0
    assert state["spent_micros"] == sum(r.cost_micros for r in rows)
    assert state["spent_micros"] <= limit
