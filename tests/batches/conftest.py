"""Every batch test settles the budgeted batches it makes: their holds last a day and more, in
the shared database where other suites count open leases."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import BudgetLease
from tests.fixtures.servers import settled


@pytest.fixture(autouse=True)
async def _no_hold_left_behind(engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    await settled()
    async with engine.connect() as conn:
        holds = (await conn.execute(select(BudgetLease.request_id).where(BudgetLease.endpoint == "batches"))).all()
    assert holds == [], "a batch was left holding money"
