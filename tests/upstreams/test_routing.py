"""Several upstreams: weighted choice, failover before anything reaches the client, per-model
routing, and admins changing them without a restart."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.config import Settings, UpstreamTarget
from app.main import create_app
from app.models import UpstreamTargetRow
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, PRICED, PRICED_MODEL, UPSTREAM_KEY, Admin, usage_rows

LOCAL_MODEL = "llama-local-test"
ALT_MODEL = "llama-alt-test"


class Flaky:
    """An upstream that is always in trouble: 429 with Retry-After and 500, in turn."""

    def __init__(self) -> None:
        self.hits = 0
        self.app = Starlette(routes=[Route("/{path:path}", self.answer, methods=["GET", "POST"])])

    async def answer(self, request: Request) -> JSONResponse:
        self.hits += 1
        error = {"error": {"message": "org-SECRETORG is busy", "type": "server_error", "param": None, "code": None}}
        if self.hits % 2:
            return JSONResponse(error, status_code=429, headers={"retry-after": "7"})
        return JSONResponse(error, status_code=500)


def _dead_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="module")
def flaky() -> Iterator[tuple[Flaky, LiveServer]]:
    upstream = Flaky()
    with LiveServer(upstream.app) as server:
        yield upstream, server


@pytest.fixture(scope="module")
def routed(settings: Settings, mock_upstream: LiveServer, flaky: tuple[Flaky, LiveServer]) -> Iterator[LiveServer]:
    good = mock_upstream.url + "/v1"
    key = SecretStr(UPSTREAM_KEY)
    upstreams = [
        UpstreamTarget(name="flaky", base_url=flaky[1].url + "/v1", weight=1000, models=[PRICED_MODEL]),
        UpstreamTarget(name="dead", base_url=_dead_url(), weight=1000, models=[PRICED_MODEL]),
        UpstreamTarget(name="good", base_url=good, api_key=key, weight=1, models=[PRICED_MODEL]),
        UpstreamTarget(name="local-llm", base_url=good, api_key=key, models=[LOCAL_MODEL]),
    ]
    prices = {**settings.gateway.price_overrides, LOCAL_MODEL: PRICED, ALT_MODEL: PRICED}
    gateway = settings.gateway.model_copy(update={"upstreams": upstreams, "price_overrides": prices})
    with LiveServer(create_app(settings.model_copy(update={"gateway": gateway}))) as server:
        yield server


@pytest.fixture
async def routed_admin(routed: LiveServer) -> Any:
    async with httpx.AsyncClient(base_url=routed.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as http:
        yield http


async def test_failover_to_the_next_upstream_before_the_client_sees_anything(
    routed: LiveServer, admin: Admin, flaky: tuple[Flaky, LiveServer], engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    client = tenant.client(routed.url)
    for _ in range(6):
        answer = await client.chat.completions.create(model=PRICED_MODEL, messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content
    stream = await client.chat.completions.create(
        model=PRICED_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert flaky[0].hits > 0, "the heavier, failing upstreams were tried first"
    rows = await usage_rows(engine, tenant.key_id)
    assert [(r.status, r.upstream) for r in rows] == [("ok", "good")] * 7
    assert all(r.cost_micros > 0 for r in rows)


async def test_per_model_routing_records_the_upstream(routed: LiveServer, admin: Admin, engine: AsyncEngine) -> None:
    tenant = await admin.tenant()
    client = tenant.client(routed.url)
    await client.chat.completions.create(model=LOCAL_MODEL, messages=[{"role": "user", "content": "hi"}])
    await client.embeddings.create(model="text-embedding-3-small", input="hi")
    rows = await usage_rows(engine, tenant.key_id)
    assert [(r.model, r.upstream) for r in rows] == [(LOCAL_MODEL, "local-llm"), ("text-embedding-3-small", "default")]


async def test_when_every_upstream_fails_the_client_gets_one_clean_error(
    routed: LiveServer, admin: Admin, engine: AsyncEngine, routed_admin: httpx.AsyncClient
) -> None:
    tenant = await admin.tenant()
    client = tenant.client(routed.url)
    off = {"base_url": "http://127.0.0.1:9/v1", "weight": 0, "models": [PRICED_MODEL]}
    assert (await routed_admin.put("/admin/upstreams/good", json=off)).status_code == 200
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=PRICED_MODEL, messages=[{"role": "user", "content": "hi"}])
    finally:
        assert (await routed_admin.delete("/admin/upstreams/good")).status_code == 204
    assert caught.value.status_code in (429, 502)
    assert "SECRETORG" not in caught.value.response.text, "upstream error bodies are never relayed"
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.cost_micros) == ("upstream_error", 0)


async def test_admins_change_upstreams_without_a_restart(
    routed: LiveServer, admin: Admin, engine: AsyncEngine, routed_admin: httpx.AsyncClient
) -> None:
    tenant = await admin.tenant()
    client = tenant.client(routed.url)
    body = {"base_url": (await _mock_url(routed_admin)), "api_key": UPSTREAM_KEY, "models": [ALT_MODEL]}
    try:
        created = await routed_admin.put("/admin/upstreams/alt-llm", json=body)
        assert created.status_code == 200, created.text
        assert created.json()["source"] == "admin" and created.json()["api_key_hint"] == "...cdef"
        await client.chat.completions.create(model=ALT_MODEL, messages=[{"role": "user", "content": "hi"}])

        listed = (await routed_admin.get("/admin/upstreams")).json()["data"]
        assert {u["name"] for u in listed} >= {"default", "flaky", "good", "alt-llm"}
        assert UPSTREAM_KEY not in str(listed)
        async with engine.connect() as conn:
            sealed = (await conn.execute(select(UpstreamTargetRow.api_key_sealed))).scalars().all()
        assert sealed and not any(UPSTREAM_KEY in s for s in sealed), "upstream keys are stored sealed"

        # Disabled: the model falls back to the general pool.
        await routed_admin.put("/admin/upstreams/alt-llm", json={**body, "enabled": False, "api_key": None})
        await client.chat.completions.create(model=ALT_MODEL, messages=[{"role": "user", "content": "hi"}])
    finally:
        assert (await routed_admin.delete("/admin/upstreams/alt-llm")).status_code == 204
    assert (await routed_admin.delete("/admin/upstreams/alt-llm")).status_code == 404
    rows = await usage_rows(engine, tenant.key_id)
    assert [r.upstream for r in rows] == ["alt-llm", "default"]


async def test_upstream_admin_routes_refuse_callers_and_bad_input(
    routed: LiveServer, admin: Admin, routed_admin: httpx.AsyncClient
) -> None:
    tenant = await admin.tenant()
    async with tenant.http(routed.url) as http:
        assert (await http.get("/admin/upstreams")).status_code in (401, 403)
    for name, body in (
        ("Bad Name", {"base_url": "http://x/v1"}),
        ("ok", {"base_url": "ftp://x"}),
        ("ok", {"base_url": "http://x/v1", "weight": -1}),
        ("ok", {"base_url": "http://x/v1", "surprise": 1}),
    ):
        response = await routed_admin.put(f"/admin/upstreams/{name}", json=body)
        assert response.status_code in (400, 404, 422) and "error" in response.json(), response.text
    names = {u["name"] for u in (await routed_admin.get("/admin/upstreams")).json()["data"]}
    assert "ok" not in names


async def _mock_url(routed_admin: httpx.AsyncClient) -> str:
    listed = (await routed_admin.get("/admin/upstreams")).json()["data"]
    return str(next(u["base_url"] for u in listed if u["name"] == "default"))
