"""A Tollgate whose poller runs every fraction of a second, for the tests of what happens to
jobs without any client asking; the shared one polls every 30 s, after those tests are done."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import FineTuningSettings, Settings
from app.main import create_app
from app.models import BudgetLease
from tests.fixtures.live_server import LiveServer


@pytest.fixture(scope="module")
def polling_tollgate(settings: Settings) -> Iterator[LiveServer]:
    fast = settings.model_copy(update={"fine_tuning": FineTuningSettings(poll_interval_s=0.2, refresh_s=0.2)})
    with LiveServer(create_app(fast)) as server:
        yield server


@pytest.fixture(autouse=True)
async def _no_hold_left_behind(engine: AsyncEngine) -> AsyncIterator[None]:
    """A test that leaves a budgeted job running leaves its hold (a lease for days) in the shared
    database, where other suites count open leases: every test here must finish its jobs."""
    yield
    async with engine.connect() as conn:
        holds = (
            await conn.execute(select(BudgetLease.request_id).where(BudgetLease.endpoint == "fine_tuning.jobs"))
        ).all()
    assert holds == [], "a fine-tuning job was left holding money"
