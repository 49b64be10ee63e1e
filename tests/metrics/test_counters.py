"""/metrics after real SDK calls: requests, tokens and cost (equal to the ledger), refusals,
upstream errors and open streams."""

from __future__ import annotations

import asyncio
import itertools
import time

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, usage_rows
from tests.metrics.scrape import Samples, scrape

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something."}]
CHAT = "/v1/chat/completions"
_teams = itertools.count(1)


async def _team_tenant(admin: Admin) -> tuple[str, Tenant]:
    name = f"metrics-team-{next(_teams)}-{time.monotonic_ns()}"
    team = await admin.http.post("/admin/teams", json={"name": name})
    assert team.status_code == 201, team.text
    return str(team.json()["id"]), await admin.tenant(team=name)


def _requests(samples: Samples, route: str, status_class: str, model: str) -> float:
    return samples.get("tollgate_requests_total", route=route, status_class=status_class, model=model)


async def test_tokens_and_cost_by_model_and_team_equal_the_ledger(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    team_id, tenant = await _team_tenant(admin)
    client = tenant.client(tollgate.url)
    mock = {"mock": {"cached_tokens": 3, "reasoning_tokens": 7}}
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, extra_body=mock)
    stream = await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, stream=True)
    async for _ in stream:
        pass
    await client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])

    rows = await usage_rows(engine, tenant.key_id)
    samples = await scrape(tollgate.url)
    assert len(rows) == 3
    for model in (PRICED_MODEL, "text-embedding-3-small"):
        mine = [r for r in rows if r.model == model]
        for kind in ("prompt", "cached", "completion", "reasoning"):
            expected = sum(getattr(r, f"{kind}_tokens") for r in mine)
            assert samples.get("tollgate_tokens_total", model=model, team=team_id, kind=kind) == expected, kind
        cost = samples.get("tollgate_cost_micros_total", model=model, team=team_id)
        assert cost == sum(r.cost_micros for r in mine) > 0
    assert samples.get("tollgate_tokens_total", model=PRICED_MODEL, team=team_id, kind="reasoning") == 7


async def test_requests_are_counted_by_route_status_class_and_model(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    before = await scrape(tollgate.url)
    for _ in range(3):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):  # unpriced, so refused before anything is reserved
        await client.chat.completions.create(model="no-such-model-xyz", messages=MESSAGES)
    async with tenant.http(tollgate.url) as http:
        assert (await http.get("/v1/no/such/route")).status_code == 404
    after = await scrape(tollgate.url)

    assert _requests(after, CHAT, "2xx", PRICED_MODEL) - _requests(before, CHAT, "2xx", PRICED_MODEL) == 3
    # A model that was never admitted is not a label: clients cannot create series by naming models.
    assert _requests(after, CHAT, "4xx", "") - _requests(before, CHAT, "4xx", "") == 1
    assert after.total("tollgate_requests_total", model="no-such-model-xyz") == 0
    assert _requests(after, "unmatched", "4xx", "") - _requests(before, "unmatched", "4xx", "") == 1
    for histogram in ("tollgate_request_duration_seconds_count", "tollgate_overhead_seconds_count"):
        assert after.get(histogram, route=CHAT) - before.get(histogram, route=CHAT) == 4


async def test_budget_refusals_are_counted_by_scope(tollgate: LiveServer, admin: Admin) -> None:
    team_id, tenant = await _team_tenant(admin)
    await admin.budget("team", team_id, "0.000001")
    before = await scrape(tollgate.url)
    with pytest.raises(openai.RateLimitError) as refused:
        await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    assert refused.value.code == "team_budget_exceeded"
    after = await scrape(tollgate.url)
    assert (
        after.get("tollgate_budget_refusals_total", scope="team")
        - before.get("tollgate_budget_refusals_total", scope="team")
        == 1
    )
    assert after.get("tollgate_budget_refusals_total", scope="key") == before.get(
        "tollgate_budget_refusals_total", scope="key"
    )


async def test_rate_limit_refusals_are_counted_by_reason(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    limit = {"scope": "key", "scope_id": tenant.key_id, "rpm": 1}
    assert (await admin.http.put("/admin/rate-limits", json=limit)).status_code == 200
    if time.time() % 60 > 50:  # fixed windows roll at each whole minute: do not straddle one
        await asyncio.sleep(60.5 - time.time() % 60)
    client = tenant.client(tollgate.url)
    before = await scrape(tollgate.url)
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    after = await scrape(tollgate.url)
    name = "tollgate_rate_limit_refusals_total"
    assert after.get(name, reason="requests") - before.get(name, reason="requests") == 1


async def test_upstream_errors_are_counted_by_upstream_and_kind(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    name = "tollgate_upstream_errors_total"
    before = await scrape(tollgate.url)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, extra_body=_mock(status=500))
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, extra_body=_mock(status=429))
    stream = await client.chat.completions.create(
        model=PRICED_MODEL, messages=MESSAGES, stream=True, extra_body={"mock": {"drop_after": 2}}
    )
    with pytest.raises(openai.APIError):
        async for _ in stream:
            pass
    after = await scrape(tollgate.url)

    for kind in ("server_error", "rate_limited", "stream_broken"):
        assert after.get(name, upstream="default", kind=kind) - before.get(name, upstream="default", kind=kind) == 1


def _mock(**controls: object) -> dict[str, object]:
    return {"mock": controls}


async def _open_streams_become(base_url: str, expected: float) -> float:
    """Polls the gauge until it shows ``expected`` (a relay ends just after its last byte)."""
    value = -1.0
    for _ in range(100):
        value = (await scrape(base_url)).get("tollgate_open_streams")
        if value == expected:
            break
        await asyncio.sleep(0.05)
    return value


async def test_open_streams_return_to_zero_after_a_stream_and_a_disconnect(
    tollgate: LiveServer, tenant: Tenant
) -> None:
    client = tenant.client(tollgate.url)
    assert await _open_streams_become(tollgate.url, 0) == 0
    stream = await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, stream=True)
    async for _ in stream:
        pass
    assert await _open_streams_become(tollgate.url, 0) == 0

    body = {"model": PRICED_MODEL, "messages": MESSAGES, "stream": True, "mock": {"stall_after": 2}}
    async with tenant.http(tollgate.url) as http, http.stream("POST", CHAT, json=body) as response:
        assert response.status_code == 200
        chunks = response.aiter_bytes()  # held: a dropped iterator would close the connection
        await anext(chunks)
        assert await _open_streams_become(tollgate.url, 1) == 1
    # The client hung up on a stream upstream had stalled.
    assert await _open_streams_become(tollgate.url, 0) == 0


async def test_pending_settlements_and_batch_sizes_are_exported(tollgate: LiveServer, tenant: Tenant) -> None:
    await tenant.client(tollgate.url).chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    samples = await scrape(tollgate.url)
    assert samples.get("tollgate_pending_settlements") == 0
    assert samples.get("tollgate_settlement_batch_size_count") >= 1
    assert samples.get("tollgate_reservation_batch_size_count") >= 1
