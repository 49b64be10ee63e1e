"""Money fails closed: the database going away refuses metered calls (503) and never loses a
charge; the reaper settles what could not be settled; service comes back on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from app.models import BudgetLease
from tests.fixtures.live_server import LiveServer
from tests.fixtures.proxy import CuttableProxy
from tests.fixtures.servers import PRICED_MODEL, Admin, lease_count, make_settings, usage_rows

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture
async def proxy(settings: Settings) -> AsyncIterator[CuttableProxy]:
    target = urlsplit(settings.database.url.replace("+asyncpg", ""))
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    yield proxy
    await proxy.stop()


@pytest.fixture
async def proxied(settings: Settings, mock_upstream: LiveServer, proxy: CuttableProxy) -> AsyncIterator[LiveServer]:
    """Started from a thread: the proxy runs on this test's event loop, which must keep turning."""
    parts = urlsplit(settings.database.url)
    url = parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}").geturl()
    through_proxy = make_settings(url, mock_upstream.url)
    through_proxy.database.pool_timeout_s = 1
    through_proxy.spend.lease_ttl_s = 2
    through_proxy.spend.reaper_interval_s = 0.3
    server = LiveServer(create_app(through_proxy))
    await asyncio.to_thread(server.start)
    yield server
    await asyncio.to_thread(server.stop)


async def test_database_down_refuses_with_503_and_recovers(
    proxied: LiveServer, proxy: CuttableProxy, admin: Admin, mock_app: object
) -> None:
    tenant = await admin.tenant()
    await admin.budget("key", tenant.key_id, "1")
    client = tenant.client(proxied.url)
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
    proxy.cut()
    await asyncio.sleep(1.1)  # past the auth cache, so nothing is served from memory alone
    for _ in range(3):
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
        assert caught.value.status_code == 503
        assert caught.value.code == "service_unavailable"
    proxy.restore()
    for _ in range(50):
        try:
            await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=5)
            break
        except openai.APIStatusError:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("service did not resume after the database came back")


async def test_unsettled_stream_is_charged_by_the_reaper(
    proxied: LiveServer, proxy: CuttableProxy, admin: Admin, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    stream = await tenant.client(proxied.url).chat.completions.create(
        model=PRICED_MODEL,
        messages=MESSAGES,
        max_tokens=40,
        stream=True,
        extra_body={"mock": {"chunk_delay_ms": 50, "words": 10}},
    )
    async with engine.connect() as conn:  # what is reserved for this stream, while it runs
        reserved = (
            await conn.execute(select(BudgetLease.amount_micros).where(BudgetLease.api_key_id == tenant.key_id))
        ).scalar_one()
    proxy.cut()  # the database disappears while the stream runs
    _ = [chunk async for chunk in stream]  # the client still gets its answer
    for _ in range(100):  # the settlement has to have tried and failed before the database returns
        if any("the reaper will charge" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the settlement did not fail although the database was away")
    proxy.restore()
    for _ in range(100):  # any replica's reaper may take the lease: this one's, or the test server's
        if (await admin.budget_state(budget_id))["reserved_micros"] == 0:
            break
        await asyncio.sleep(0.1)
    state = await admin.budget_state(budget_id)
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.usage_source) == ("lease_expired", "estimated")
    assert state["spent_micros"] == row.cost_micros == reserved, "charged at the reserved amount, never less"
    assert state["reserved_micros"] == 0
    assert await lease_count(engine) == 0


async def test_oversized_real_usage_is_still_billed_in_full(tollgate: LiveServer, admin: Admin) -> None:
    """Upstream usage is the truth: if it ever exceeds the estimate, the excess is billed."""
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "1")
    await tenant.client(tollgate.url).chat.completions.create(
        model=PRICED_MODEL, messages=MESSAGES, max_tokens=5, extra_body={"mock": {"reasoning_tokens": 20}}
    )
    state = await admin.budget_state(budget_id)
    assert state["reserved_micros"] == 0
    assert state["spent_micros"] >= 20 * 8


async def test_healthz_is_up_without_auth(tollgate: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
