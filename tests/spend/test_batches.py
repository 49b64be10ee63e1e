"""Batched reservations on PostgreSQL: one call, each item decided in order, as if sent alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.api_keys.schemas import Principal
from app.config import DatabaseSettings, SpendSettings
from app.db import DB_ERRORS, create_money_pool
from app.errors import ServiceUnavailable
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.models import BudgetLease, UsageRequestId
from app.spend.repository import MoneyFunctions, PendingSettlement, ReserveArgs
from app.spend.service import Estimate, SpendService
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.service import Settlement, record_values
from tests.fixtures.servers import PRICED, PRICED_MODEL, usage_rows
from tests.spend.helpers import load_budget, new_principal, principal_with_budget

# PRICED_MODEL: 2 micro-dollars per input token, 8 per output token.
PROMPT, CAP = 10, 100
WORST = PROMPT * 2 + CAP * 8
ENDPOINT = "test.batches"


@pytest.fixture
async def spend(engine: AsyncEngine, database_url: str) -> AsyncIterator[SpendService]:
    if engine.dialect.name != "postgresql":
        pytest.skip("batched reservations are PostgreSQL's fast path")
    pool = await create_money_pool(DatabaseSettings(url=database_url))
    functions = MoneyFunctions(pool, acquire_timeout_s=5, statement_timeout_s=10)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    service = SpendService(sessionmaker, PriceBook({PRICED_MODEL: PRICED}), SpendSettings(), functions)
    yield service
    await service.flushed()
    await functions.close()
    # Leases these tests leave open would be reaped (and counted) by other tests' servers.
    async with engine.begin() as conn:
        await conn.execute(delete(BudgetLease).where(BudgetLease.endpoint == ENDPOINT))


def _args(principal: Principal, cap: int = CAP) -> ReserveArgs:
    return ReserveArgs(
        new_id("req"),
        principal.key_id,
        principal.user_id,
        None,
        ENDPOINT,
        PRICED_MODEL,
        PROMPT,
        Decimal(2),
        Decimal(8),
        cap,
        1,
        1,
        True,
    )


async def test_one_batch_decides_each_item_against_the_ones_before_it(spend: SpendService) -> None:
    assert spend.functions is not None
    principal, budget_id = await principal_with_budget(spend.sessionmaker, 2 * WORST + 100)
    unbudgeted = new_principal()
    items = [_args(principal), _args(principal), _args(principal), _args(unbudgeted), _args(principal)]
    outcomes = await spend.functions.reserve_batch(items, utcnow(), 60)
    assert [o.outcome for o in outcomes] == ["reserved", "reserved", "reserved", "unbudgeted", "refused"]
    assert [o.amount for o in outcomes[:2]] == [WORST, WORST]
    # The third fits only with a smaller answer: the cap is lowered to what the room left pays for.
    assert outcomes[2].cap == (100 - PROMPT * 2) // 8
    assert outcomes[4].budget_id == budget_id
    budget = await load_budget(spend.sessionmaker, budget_id)
    assert budget.reserved_micros == sum(o.amount for o in outcomes) <= budget.limit_micros
    async with spend.sessionmaker() as session:
        leases = (await session.execute(select(BudgetLease).where(BudgetLease.api_key_id == principal.key_id))).all()
    assert len(leases) == 3


async def test_concurrent_reservations_share_calls_and_never_overspend(spend: SpendService) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker, 5 * WORST)
    estimate = Estimate(PRICED_MODEL, ENDPOINT, PROMPT, CAP)
    outcomes = await asyncio.gather(
        *(spend.reserve(principal, new_id("req"), estimate) for _ in range(40)), return_exceptions=True
    )
    reserved = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (
        sum(r.amount for r in reserved)
        == (await load_budget(spend.sessionmaker, budget_id)).reserved_micros
        <= 5 * WORST
    )
    assert len(reserved) == 5
    assert spend._reservations.batches < 40


async def test_a_reservation_whose_caller_left_is_given_back(spend: SpendService, engine: AsyncEngine) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker, 10 * WORST)
    estimate = Estimate(PRICED_MODEL, ENDPOINT, PROMPT, CAP)
    leaving = asyncio.create_task(spend.reserve(principal, new_id("req"), estimate))
    for _ in range(1000):  # until the call is on its way to the database
        if spend._reservations.batches:
            break
        await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    for _ in range(100):
        await spend.flushed()
        if await usage_rows(engine, principal.key_id):
            break
        await asyncio.sleep(0.02)
    [row] = await usage_rows(engine, principal.key_id)
    assert (row.status, row.cost_micros, row.http_status) == ("client_disconnected", 0, 499)
    budget = await load_budget(spend.sessionmaker, budget_id)
    assert (budget.reserved_micros, budget.spent_micros) == (0, 0)


@contextlib.asynccontextmanager
async def _ledger_held(engine: AsyncEngine, request_id: str) -> AsyncIterator[None]:
    """Another transaction has registered ``request_id`` and not committed: a money transaction
    writing that ledger row waits for it, holding whatever it locked before."""
    async with engine.connect() as conn:
        await conn.execute(insert(UsageRequestId).values(request_id=request_id, created_at=utcnow()))
        yield
        await conn.rollback()


async def _waits_on_a_lock(engine: AsyncEngine) -> bool:
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    for _ in range(200):
        async with engine.connect() as conn:
            if (await conn.execute(query)).scalar_one():
                return True
        await asyncio.sleep(0.01)
    return False


async def _reserve_meanwhile(spend: SpendService, principal: Principal) -> None:
    """A reservation on the same budget answers while the other transaction is stuck."""
    assert spend.functions is not None
    [outcome] = await asyncio.wait_for(spend.functions.reserve_batch([_args(principal)], utcnow(), 60), 3)
    assert outcome.outcome == "reserved"


async def test_a_settle_batch_stuck_on_the_ledger_does_not_hold_its_budgets(
    spend: SpendService, engine: AsyncEngine
) -> None:
    assert spend.functions is not None
    principal, budget_id = await principal_with_budget(spend.sessionmaker, 10 * WORST)
    first = _args(principal)
    await spend.functions.reserve_batch([first], utcnow(), 60)
    settlement = Settlement(
        first.request_id, ENDPOINT, PRICED_MODEL, TokenUsage(prompt=PROMPT), 20, "ok", 200, 1, "upstream"
    )
    pending = PendingSettlement(
        first.request_id, 20, record_values(principal.key_id, principal.user_id, None, settlement)
    )
    async with _ledger_held(engine, first.request_id):
        settling = asyncio.create_task(spend.functions.settle_batch([pending], utcnow()))
        assert await _waits_on_a_lock(engine)
        await _reserve_meanwhile(spend, principal)
    await settling
    budget = await load_budget(spend.sessionmaker, budget_id)
    assert (budget.spent_micros, budget.reserved_micros) == (20, WORST)
    [row] = await usage_rows(engine, principal.key_id)
    assert row.cost_micros == 20


async def test_the_reaper_stuck_on_the_ledger_does_not_hold_its_budgets(
    spend: SpendService, engine: AsyncEngine
) -> None:
    assert spend.functions is not None
    principal, budget_id = await principal_with_budget(spend.sessionmaker, 10 * WORST)
    expired = _args(principal)
    await spend.functions.reserve_batch([expired], utcnow() - timedelta(minutes=5), 60)
    async with _ledger_held(engine, expired.request_id):
        reaping = asyncio.create_task(spend.reap_once())
        assert await _waits_on_a_lock(engine)
        await _reserve_meanwhile(spend, principal)
    assert await reaping >= 1
    budget = await load_budget(spend.sessionmaker, budget_id)
    assert (budget.spent_micros, budget.reserved_micros) == (WORST, WORST)


async def test_each_kind_of_call_keeps_its_connection(spend: SpendService) -> None:
    functions = spend.functions
    assert functions is not None
    principal, _ = await principal_with_budget(spend.sessionmaker, 10 * WORST)
    await functions.reserve_batch([_args(principal)], utcnow(), 60)
    await functions.settle_batch([], utcnow())
    lanes = dict(functions._held)
    for _ in range(3):
        await functions.reserve_batch([_args(principal)], utcnow(), 60)
        await functions.settle_batch([], utcnow())
    assert functions._held == lanes
    assert lanes["reserve"] is not lanes["settle"]
    # A lane whose connection was closed takes a new one from the pool and answers.
    lanes["reserve"].terminate()
    [outcome] = await functions.reserve_batch([_args(principal)], utcnow(), 60)
    assert outcome.outcome == "reserved"
    assert functions._held["reserve"] is not lanes["reserve"]
    # One whose server process went away (a restart): the call that finds out may fail, as on a
    # pooled connection (unless the close arrived first), and the next is answered on a new one.
    gone = functions._held["reserve"].get_server_pid()
    async with functions.pool.acquire() as other:
        await other.execute("SELECT pg_terminate_backend($1)", gone)
    with contextlib.suppress(*DB_ERRORS):
        await functions.reserve_batch([_args(principal)], utcnow(), 60)
    [outcome] = await functions.reserve_batch([_args(principal)], utcnow(), 60)
    assert outcome.outcome == "reserved"
    assert functions._held["reserve"].get_server_pid() != gone


async def test_a_connection_that_died_mid_call_is_a_503_not_a_500(
    spend: SpendService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncpg reports a backend that died during a call as InternalClientError ("cannot switch
    to state ..."): the database went away, so the request is refused as unconfirmed."""
    assert spend.functions is not None
    principal, _ = await principal_with_budget(spend.sessionmaker, 10 * WORST)

    async def dies(*_args: object) -> list[object]:
        raise asyncpg.exceptions.InternalClientError("cannot switch to state 12; another operation (2) is in progress")

    monkeypatch.setattr(spend.functions, "reserve_batch", dies)
    with pytest.raises(ServiceUnavailable):
        await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, ENDPOINT, PROMPT, CAP))
