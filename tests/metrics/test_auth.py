"""/metrics is never open: the scrape token or an admin key."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from app.config import MetricsSettings, Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, Tenant

SCRAPE_TOKEN = "scrape-" + "t" * 40


@pytest.fixture(scope="module")
def guarded(settings: Settings) -> Iterator[LiveServer]:
    with_token = settings.model_copy(update={"metrics": MetricsSettings(token=SecretStr(SCRAPE_TOKEN))})
    with LiveServer(create_app(with_token)) as server:
        yield server


async def _status(base_url: str, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        response = await http.get("/metrics", headers=headers)
    if response.status_code != 200:
        assert "error" in response.json()
    else:
        assert "tollgate_requests_total" in response.text
    return response.status_code


async def test_without_a_scrape_token_only_admin_keys_may_scrape(tollgate: LiveServer, tenant: Tenant) -> None:
    assert await _status(tollgate.url, None) == 401
    assert await _status(tollgate.url, "tg-not-a-key") == 401
    assert await _status(tollgate.url, tenant.token) == 403
    assert await _status(tollgate.url, SCRAPE_TOKEN) == 401
    assert await _status(tollgate.url, ADMIN_KEY) == 200


async def test_the_scrape_token_reads_metrics_and_nothing_else(guarded: LiveServer, tenant: Tenant) -> None:
    assert await _status(guarded.url, SCRAPE_TOKEN) == 200
    assert await _status(guarded.url, ADMIN_KEY) == 200
    assert await _status(guarded.url, SCRAPE_TOKEN[:-1]) == 401
    assert await _status(guarded.url, tenant.token) == 403
    async with httpx.AsyncClient(base_url=guarded.url, timeout=10) as http:
        headers = {"authorization": f"Bearer {SCRAPE_TOKEN}"}
        assert (await http.get("/admin/teams", headers=headers)).status_code == 401
        assert (await http.get("/v1/models", headers=headers)).status_code == 401


def test_a_short_scrape_token_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="TOLLGATE_METRICS_TOKEN"):
        Settings(database=settings.database, keys=settings.keys, metrics=MetricsSettings(token=SecretStr("short")))
