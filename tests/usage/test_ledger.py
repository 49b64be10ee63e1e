"""The partitioned ledger on PostgreSQL: settlement stays write-once without a unique request_id,
the rollup moves with every ledger write, partitions are made ahead and retention drops them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from app.config import DatabaseSettings, SpendSettings, UsageSettings
from app.db import create_money_pool
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.models import BudgetLease, UsageRecord, UsageRollup
from app.spend.repository import MoneyFunctions, PendingSettlement
from app.spend.service import Estimate, SpendService
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.reports import usage_report
from app.usage.repository import PartitionRepository, UsageRepository
from app.usage.schemas import ReportQuery, UsageFilters
from app.usage.service import LedgerMaintenance, Settlement, record_values
from tests.fixtures.servers import PRICED, PRICED_MODEL, usage_rows
from tests.spend.helpers import load_budget, new_principal, principal_with_budget
from tests.usage.helpers import row

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def postgres_only(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("partitioning is PostgreSQL's")


@pytest.fixture(params=["batch_function", "orm"])
async def spend(request: pytest.FixtureRequest, engine: AsyncEngine, database_url: str) -> AsyncIterator[SpendService]:
    """Both settlement paths: PostgreSQL's batch function, and the statements SQLite uses."""
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    pool = await create_money_pool(DatabaseSettings(url=database_url)) if request.param == "batch_function" else None
    functions = MoneyFunctions(pool, 5, 10) if pool is not None else None
    service = SpendService(sessionmaker, PriceBook({PRICED_MODEL: PRICED}), SpendSettings(), functions)
    yield service
    await service.flushed()
    if functions is not None:
        await functions.close()


def _settlement(request_id: str, cost: int, endpoint: str = "chat") -> Settlement:
    return Settlement(request_id, endpoint, PRICED_MODEL, TokenUsage(10, 0, 5, 0), cost, "ok", 200, 1, "upstream")


async def _every_grain_agrees(engine: AsyncEngine, user_id: str, endpoint: str, requests: int) -> None:
    """The report from each rollup grain (by user: 2, by endpoint: 1, by key and model: 0) equals
    the one from the raw rows."""
    now = utcnow()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    for filters, group_by in (
        (UsageFilters(user_id=user_id), ()),
        (UsageFilters(endpoint=endpoint), ("model",)),
        (UsageFilters(user_id=user_id), ("key", "model")),
    ):
        query = ReportQuery(start, start + timedelta(days=60), "day", "UTC", group_by, filters)
        async with sessionmaker() as session:
            auto, raw = await usage_report(session, query), await usage_report(session, replace(query, source="raw"))
        assert auto.source == "rollup" and raw.source == "raw"
        assert auto.model_dump(exclude={"source"}) == raw.model_dump(exclude={"source"})
        assert auto.totals.requests == requests


async def _rollup(engine: AsyncEngine, key_id: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        statement = select(func.sum(UsageRollup.requests), func.sum(UsageRollup.cost_micros))
        requests, cost = (await conn.execute(statement.where(UsageRollup.api_key_id == key_id))).one()
    return int(requests or 0), int(cost or 0)


async def test_a_retried_settlement_is_written_once(spend: SpendService, engine: AsyncEngine) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    endpoint = new_id("test.endpoint")
    settlement = _settlement(reservation.request_id, 60, endpoint)
    values = record_values(principal.key_id, principal.user_id, None, settlement)
    again = values | {"created_at": utcnow() + timedelta(days=40)}  # a retry that lands in another partition
    for usage in (values, values, again):
        spend.settlements.submit(PendingSettlement(reservation.request_id, 60, usage))
        await spend.flushed()
    assert (await load_budget(spend.sessionmaker, budget_id)).spent_micros == 60
    assert [(r.cost_micros, r.status) for r in await usage_rows(engine, principal.key_id)] == [(60, "ok")]
    assert await _rollup(engine, principal.key_id) == (1, 60)
    await _every_grain_agrees(engine, principal.user_id, endpoint, 1)


async def test_a_settlement_after_the_reaper_writes_nothing(spend: SpendService, engine: AsyncEngine) -> None:
    principal, budget_id = await principal_with_budget(spend.sessionmaker)
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    async with spend.sessionmaker.begin() as session:
        expired = update(BudgetLease).where(BudgetLease.request_id == reservation.request_id)
        await session.execute(expired.values(expires_at=utcnow() - timedelta(seconds=1)))
    await spend.reap_once()  # this reaper, or a running test server's, takes the lease
    late = record_values(principal.key_id, principal.user_id, None, _settlement(reservation.request_id, 60))
    # Even a month later (another partition, so no unique constraint could catch it).
    late["created_at"] = utcnow() + timedelta(days=40)
    spend.settlements.submit(PendingSettlement(reservation.request_id, 60, late))
    await spend.flushed()
    [only] = await usage_rows(engine, principal.key_id)
    assert (only.status, only.cost_micros) == ("lease_expired", reservation.amount)
    assert (await load_budget(spend.sessionmaker, budget_id)).spent_micros == reservation.amount
    assert await _rollup(engine, principal.key_id) == (1, reservation.amount)


async def test_an_unbudgeted_request_is_written_once(spend: SpendService, engine: AsyncEngine) -> None:
    principal = new_principal()
    reservation = await spend.reserve(principal, new_id("req"), Estimate(PRICED_MODEL, "chat", 10, 100))
    assert not reservation.budget_ids
    values = record_values(principal.key_id, principal.user_id, None, _settlement(reservation.request_id, 30))
    # The same item sent twice, and once more written at another time (another replica, another
    # month's partition): no lease to take, and still one row.
    later = {**values, "created_at": values["created_at"] + timedelta(days=40)}  # type: ignore[operator]
    for written in (values, values, later):
        spend.settlements.submit(PendingSettlement(reservation.request_id, 30, written))
        await spend.flushed()
    assert len(await usage_rows(engine, principal.key_id)) == 1
    assert await _rollup(engine, principal.key_id) == (1, 30)


async def _drop(engine: AsyncEngine, *partitions: str) -> None:
    """Only the partitions a test made: the other tests' months stay."""
    async with engine.begin() as conn:
        for name in partitions:
            await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))


async def _partition_of(engine: AsyncEngine, request_id: str) -> str:
    async with engine.connect() as conn:
        statement = text("SELECT tableoid::regclass::text FROM usage_records WHERE request_id = :r")
        return str((await conn.execute(statement, {"r": request_id})).scalar_one())


async def test_rows_land_in_their_month_and_late_partitions_take_theirs_from_default(engine: AsyncEngine) -> None:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    now = utcnow()
    here, ahead = (
        row(now, key=new_id("key"), user=new_id("user")),
        row(datetime(2091, 5, 17, tzinfo=UTC), key=new_id("key"), user=new_id("user")),
    )

    async with sessionmaker.begin() as session:
        await UsageRepository(session).write([here, ahead])
    assert await _partition_of(engine, str(here["request_id"])) == f"usage_records_{now:%Y%m}"
    assert await _partition_of(engine, str(ahead["request_id"])) == "usage_records_default"
    created, _ = await LedgerMaintenance(sessionmaker, UsageSettings(partitions_ahead=1)).maintain(
        datetime(2091, 5, 1, tzinfo=UTC)
    )
    assert created == 2  # May and June 2091
    assert await _partition_of(engine, str(ahead["request_id"])) == "usage_records_209105"
    async with sessionmaker() as session:
        assert {"usage_records_209105", "usage_records_209106"} <= set(await PartitionRepository(session).months())
    await _drop(engine, "usage_records_209105", "usage_records_209106")


async def test_retention_drops_whole_old_partitions_and_their_rollup(engine: AsyncEngine) -> None:
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    key = new_id("key")
    async with sessionmaker.begin() as session:
        await PartitionRepository(session).ensure([date(2001, 1, 1), date(2001, 2, 1)])

    async with sessionmaker.begin() as session:
        old = [row(datetime(2001, 1, d, tzinfo=UTC), key=key, user="u") for d in (3, 4)]
        kept = row(datetime(2001, 2, 1, tzinfo=UTC), key=key, user="u")
        await UsageRepository(session).write([*old, kept])
    # Keep 24 months before March 2003: January 2001 goes, February 2001 stays.
    maintenance = LedgerMaintenance(sessionmaker, UsageSettings(retention_months=25))
    _, dropped = await maintenance.maintain(datetime(2003, 3, 10, tzinfo=UTC))
    assert dropped == 1
    async with sessionmaker() as session:
        months = await PartitionRepository(session).months()
        left = (await session.execute(select(UsageRecord.created_at).where(UsageRecord.api_key_id == key))).scalars()
        assert list(left) == [kept["created_at"]]
    assert "usage_records_200101" not in months and "usage_records_200102" in months
    assert "usage_records_default" in months and f"usage_records_{utcnow():%Y%m}" in months
    assert await _rollup(engine, key) == (1, 100)
    await _drop(engine, "usage_records_200102", "usage_records_200303", "usage_records_200304", "usage_records_200305")
