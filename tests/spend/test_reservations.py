"""The money path end to end: reserve worst case, enforce the cap, settle, release, refuse."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.db_types import utcnow
from app.kit.tokens import count_chat_prompt
from app.models import Budget
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, lease_count, usage_rows

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me something."}]
PROMPT = count_chat_prompt(PRICED_MODEL, list(MESSAGES))


def worst_case(cap: int) -> int:
    """PRICED_MODEL: $2/M input, $8/M output, i.e. 2 and 8 micro-dollars per token."""
    return PROMPT * 2 + cap * 8


async def test_settled_spend_equals_the_ledger_and_nothing_stays_reserved(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    client = tenant.client(tollgate.url)
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=50)
    stream = await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, stream=True)
    _ = [c async for c in stream]
    await _until_settled(engine, tenant.key_id, 2)

    state = await admin.budget_state(budget_id)
    rows = await usage_rows(engine, tenant.key_id)
    assert state["spent_micros"] == sum(r.cost_micros for r in rows) > 0
    assert state["reserved_micros"] == 0


async def test_injected_cap_is_what_the_budget_can_pay_for(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("user", tenant.user_id, f"{worst_case(30) / 1_000_000:.6f}")
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    assert mock_app.state.requests[-1].body["max_completion_tokens"] == 30


async def test_a_generous_budget_injects_the_default_cap(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "100")
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    assert mock_app.state.requests[-1].body["max_completion_tokens"] == 4096


async def test_client_cap_is_kept_when_affordable_and_lowered_when_not(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, f"{worst_case(40) / 1_000_000:.6f}")
    client = tenant.client(tollgate.url)
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=20)
    assert mock_app.state.requests[-1].body["max_tokens"] == 20
    assert "max_completion_tokens" not in mock_app.state.requests[-1].body
    # 20 of the 40 affordable tokens were reserved and ~12 spent, so a 100-token cap gets lowered.
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=100)
    lowered = mock_app.state.requests[-1].body["max_tokens"]
    assert 1 <= lowered < 40


async def test_no_budget_means_the_body_is_left_alone(tollgate: LiveServer, admin: Admin, mock_app: Starlette) -> None:
    tenant = await admin.tenant()
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    assert "max_completion_tokens" not in mock_app.state.requests[-1].body


async def test_refusal_is_a_429_that_the_sdk_does_not_retry(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    team = await admin.http.post("/admin/teams", json={"name": f"team-{tenant.user_name}"})
    await admin.http.post("/admin/users", json={"name": f"{tenant.user_name}-t", "team": team.json()["name"]})
    teammate = await admin.http.post("/admin/keys", json={"user": f"{tenant.user_name}-t"})
    await admin.budget("team", team.json()["id"], "0.000001", period="daily")
    before = len(mock_app.state.requests)

    key = teammate.json()["key"]
    async with openai.AsyncOpenAI(base_url=tollgate.url + "/v1", api_key=key, max_retries=3) as client:
        with pytest.raises(openai.RateLimitError) as caught:
            await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)

    response = caught.value.response
    assert caught.value.code == "team_budget_exceeded"
    assert response.headers["x-should-retry"] == "false"
    assert response.headers["x-tollgate-budget-resets-at"].endswith("T00:00:00+00:00")
    assert "daily team budget" in caught.value.message
    assert len(mock_app.state.requests) == before, "refused before upstream, and not retried"
    assert await usage_rows(engine, teammate.json()["id"]) == []


async def test_failed_upstream_call_releases_its_reservation(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    with pytest.raises(openai.InternalServerError):
        await tenant.client(tollgate.url).chat.completions.create(
            model=PRICED_MODEL, messages=MESSAGES, extra_body={"mock": {"status": 500}}
        )
    state = await admin.budget_state(budget_id)
    assert (state["spent_micros"], state["reserved_micros"]) == (0, 0)
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.cost_micros) == ("upstream_error", 0)


async def test_a_new_period_starts_from_zero(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "0.01", period="daily")
    async with engine.begin() as conn:  # yesterday this key spent its whole budget
        yesterday = utcnow() - timedelta(days=1, hours=1)
        await conn.execute(
            update(Budget).where(Budget.id == budget_id).values(spent_micros=10_000, period_start=yesterday)
        )
    assert (await admin.budget_state(budget_id))["spent_micros"] == 0
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=10)
    state = await admin.budget_state(budget_id)
    assert 0 < state["spent_micros"] <= worst_case(10)


async def test_me_shows_budgets_and_soft_limits(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "0.001", soft_limit_usd="0.0001")
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=20)
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        body = (await http.get("/v1/me", headers={"authorization": f"Bearer {tenant.token}"})).json()
    [budget] = body["budgets"]
    assert budget["id"] == budget_id
    assert budget["limit_micros"] == 1000
    assert budget["spent_micros"] + budget["remaining_micros"] == 1000
    assert budget["soft_limit_reached"] is True
    assert budget["period_end"] is not None


async def test_embeddings_reserve_exact_input_cost(tollgate: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "0.000001")  # one micro-dollar
    client = tenant.client(tollgate.url)
    await client.embeddings.create(model="text-embedding-3-small", input="hello")  # 1 token: $0.02/M -> 1 micro
    with pytest.raises(openai.RateLimitError):
        await client.embeddings.create(model="text-embedding-3-small", input="hello again")
    state = await admin.budget_state(budget_id)
    assert (state["spent_micros"], state["reserved_micros"]) == (1, 0)
    assert len(await usage_rows(engine, tenant.key_id)) == 1


async def _until_settled(engine: AsyncEngine, key_id: str, rows: int) -> None:
    for _ in range(200):
        if len(await usage_rows(engine, key_id)) >= rows and await lease_count(engine) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("requests did not settle")
