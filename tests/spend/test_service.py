"""Settlement is idempotent and races with the reaper are harmless."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import SpendSettings
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.models import BudgetLease
from app.spend.service import Estimate, SpendService
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.service import Settlement
from tests.fixtures.servers import PRICED, PRICED_MODEL, usage_rows
from tests.spend.helpers import load_budget, principal_with_budget


@pytest.fixture
async def spend(engine: AsyncEngine) -> SpendService:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    return SpendService(sessionmaker, PriceBook({PRICED_MODEL: PRICED}), SpendSettings())


def _settlement(request_id: str, cost: int) -> Settlement:
    return Settlement(
        request_id, "chat.completions", PRICED_MODEL, TokenUsage(10, 0, 5, 0), cost, "ok", 200, 1, "upstream"
    )


async def _expire(spend: SpendService, request_id: str) -> None:
    """As if the process holding the lease had died a while ago."""
    async with spend.sessionmaker.begin() as session:
        await session.execute(
            update(BudgetLease)
            .where(BudgetLease.request_id == request_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_settling_twice_charges_once(spend: SpendService, engine: AsyncEngine) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    assert reservation.amount == 10 * 2 + 100 * 8
    spend.settle(principal, reservation, _settlement(reservation.request_id, 60))
    spend.settle(principal, reservation, _settlement(reservation.request_id, 60))
    await spend.flushed()
    budget = await load_budget(spend.sessionmaker, budget_id)
    assert (budget.spent_micros, budget.reserved_micros) == (60, 0)
    assert len(await usage_rows(engine, principal.key_id)) == 1


async def test_late_settlement_after_the_reaper_does_not_double_charge(
    spend: SpendService, engine: AsyncEngine
) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    await _expire(spend, reservation.request_id)
    await spend.reap_once()  # this replica's reaper, or the running test server's, takes the lease
    spend.settle(principal, reservation, _settlement(reservation.request_id, 60))
    await spend.flushed()
    budget = await load_budget(spend.sessionmaker, budget_id)
    [row] = await usage_rows(engine, principal.key_id)
    assert (row.status, row.cost_micros) == ("lease_expired", reservation.amount)
    assert (budget.spent_micros, budget.reserved_micros) == (reservation.amount, 0)


async def test_heartbeat_keeps_live_leases_from_the_reaper(spend: SpendService) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    async with spend.sessionmaker.begin() as session:  # about to expire, as a long stream's lease would be
        await session.execute(
            update(BudgetLease)
            .where(BudgetLease.request_id == reservation.request_id)
            .values(expires_at=utcnow() + timedelta(seconds=1))
        )
    await spend.heartbeat_once()
    async with spend.sessionmaker() as session:
        lease = await session.get(BudgetLease, reservation.request_id)
        assert lease is not None
        assert lease.expires_at > utcnow() + timedelta(seconds=spend.settings.lease_ttl_s - 5)
    await spend.reap_once()
    assert (await load_budget(spend.sessionmaker, budget_id)).reserved_micros == reservation.amount
    spend.settle(principal, reservation, _settlement(reservation.request_id, 0))
    await spend.flushed()
    assert (await load_budget(spend.sessionmaker, budget_id)).reserved_micros == 0


async def test_model_maximum_caps_the_injected_output(engine: AsyncEngine) -> None:
    settings = SpendSettings(model_max_output_tokens={PRICED_MODEL: 7})
    spend = SpendService(
        async_sessionmaker(engine, expire_on_commit=False), PriceBook({PRICED_MODEL: PRICED}), settings
    )
    principal, _ = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, None))
    assert reservation.output_cap == 7
    assert reservation.amount == 10 * 2 + 7 * 8
    spend.settle(principal, reservation, _settlement(reservation.request_id, 0))
    await spend.flushed()
