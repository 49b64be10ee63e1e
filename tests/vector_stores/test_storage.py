"""Vector store storage, charged per store per day to the creator's budgets, once however many
replicas run the meter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings, VectorStoreSettings
from app.db import create_sessionmaker
from app.gateway.upstream import Upstream
from app.spend.service import SpendService
from app.usage.pricing import PriceBook
from app.vector_stores.storage import StorageMeter, storage_request_id
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, usage_rows

# $20 per GB-day is 20e6 micro-dollars per 1e9 bytes: 0.02 micro-dollars a byte.
PRICE = VectorStoreSettings(storage_price_per_gb_day=Decimal("20"))
# Days no other test meters, so the stores of other tests do not get in the way.
DAY_ONE, DAY_TWO = date(2031, 3, 1), date(2031, 3, 2)


@pytest.fixture
async def replicas(settings: Settings, engine: AsyncEngine) -> AsyncIterator[list[StorageMeter]]:
    """Two meters with their own upstream clients, as two Tollgate replicas would run them."""
    sessionmaker = create_sessionmaker(engine)
    upstreams = [Upstream(settings.upstream), Upstream(settings.upstream)]
    spend = SpendService(sessionmaker, PriceBook({}), settings.spend)
    yield [StorageMeter(sessionmaker, u, spend, PRICE) for u in upstreams]
    for upstream in upstreams:
        await upstream.aclose()


async def test_storage_is_charged_once_per_store_per_day(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, replicas: list[StorageMeter]
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    budget = await admin.budget("user", alice.user_id, "10")
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    big = (await a.files.create(file=("big.txt", b"x" * 50_000), purpose="assistants")).id
    small = (await b.files.create(file=("small.txt", b"y" * 20_000), purpose="assistants")).id
    alices = await a.vector_stores.create(name="big", file_ids=[big])
    bobs = await b.vector_stores.create(name="small", file_ids=[small])
    await b.vector_stores.create(name="empty")  # no bytes, no charge
    gone = await b.vector_stores.create(name="gone", file_ids=[small])
    await b.vector_stores.delete(gone.id)

    await asyncio.gather(*(meter.run_once(DAY_ONE) for meter in replicas))
    assert await replicas[0].run_once(DAY_ONE) == 0  # the day is charged already

    [alice_row] = await usage_rows(engine, alice.key_id)
    assert alice_row.request_id == storage_request_id(alices.id, DAY_ONE)
    assert (alice_row.endpoint, alice_row.model, alice_row.upstream_request_id) == (
        "vector_stores.storage",
        "vector-store-storage",
        alices.id,
    )
    assert (alice_row.unit, alice_row.units, alice_row.cost_micros) == ("byte_day", 50_000, 1_000)
    [bob_row] = await usage_rows(engine, bob.key_id)
    assert (bob_row.upstream_request_id, bob_row.units, bob_row.cost_micros) == (bobs.id, 20_000, 400)

    await b.vector_stores.files.delete(small, vector_store_id=bobs.id)  # the store shrinks to nothing
    await asyncio.gather(*(meter.run_once(DAY_TWO) for meter in replicas))
    assert [(r.units, r.cost_micros) for r in await usage_rows(engine, alice.key_id)] == [(50_000, 1_000)] * 2
    assert len(await usage_rows(engine, bob.key_id)) == 1
    state = await admin.budget_state(budget)
    assert (state["spent_micros"], state["reserved_micros"]) == (2_000, 0)
