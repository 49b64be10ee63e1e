"""A Tollgate whose poller runs every fraction of a second, for the tests of what happens to
jobs without any client asking; the shared one polls every 30 s, after those tests are done."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.config import FineTuningSettings, Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer


@pytest.fixture(scope="module")
def polling_tollgate(settings: Settings) -> Iterator[LiveServer]:
    fast = settings.model_copy(update={"fine_tuning": FineTuningSettings(poll_interval_s=0.2, refresh_s=0.2)})
    with LiveServer(create_app(fast)) as server:
        yield server
