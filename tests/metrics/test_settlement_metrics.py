"""The money path's metrics: reaped leases count into the ledger counters, failed writes are counted
and leave nothing pending."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from app.config import SpendSettings
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.models import BudgetLease
from app.spend.service import Estimate, Reservation, SpendService
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.service import Settlement
from tests.fixtures.servers import PRICED, PRICED_MODEL, usage_rows
from tests.spend.helpers import new_principal, principal_with_budget


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(check: object, timeout_s: float = 10) -> None:
    """Another test server's reaper may take the lease instead; it counts just after its commit."""
    assert callable(check)
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    assert check()


async def test_a_reaped_lease_is_counted_like_its_ledger_row(engine: AsyncEngine) -> None:
    spend = SpendService(
        async_sessionmaker(engine, expire_on_commit=False), PriceBook({PRICED_MODEL: PRICED}), SpendSettings()
    )
    principal, _ = await principal_with_budget(spend.sessionmaker)
    cost = ("tollgate_cost_micros_total", {"model": PRICED_MODEL, "team": "none"})
    reaped_before, cost_before = _value("tollgate_leases_reaped_total"), _value(cost[0], **cost[1])
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    async with spend.sessionmaker.begin() as session:  # as if its process had died a while ago
        await session.execute(
            update(BudgetLease)
            .where(BudgetLease.request_id == reservation.request_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await spend.reap_once()
    await _until(lambda: _value("tollgate_leases_reaped_total") - reaped_before >= 1)
    [row] = await usage_rows(engine, principal.key_id)
    assert row.status == "lease_expired"
    await _until(lambda: _value(cost[0], **cost[1]) - cost_before >= row.cost_micros)
    assert _value(cost[0], **cost[1]) - cost_before == row.cost_micros == reservation.amount


async def test_a_failed_settlement_write_is_counted_and_not_left_pending() -> None:
    unreachable = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    spend = SpendService(async_sessionmaker(unreachable), PriceBook({PRICED_MODEL: PRICED}), SpendSettings())
    failures_before = _value("tollgate_settlement_failures_total")
    pending_before = _value("tollgate_pending_settlements")
    principal, reservation = new_principal(), Reservation(new_id("req"))
    settlement = Settlement(
        reservation.request_id, "chat", PRICED_MODEL, TokenUsage(10, 0, 5, 0), 60, "ok", 200, 1, "upstream"
    )
    spend.settle(principal, reservation, settlement)
    assert _value("tollgate_pending_settlements") - pending_before == 1
    await spend.flushed()
    await unreachable.dispose()
    assert _value("tollgate_settlement_failures_total") - failures_before == 1
    assert _value("tollgate_pending_settlements") == pending_before
