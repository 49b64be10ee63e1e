"""A Tollgate of its own with short timeouts and a small answer limit, on a mock of its own, and
how to tell that it is back at rest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from app.mock_upstream.server import MockConfig, create_mock_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Admin, Tenant, make_settings

READ_TIMEOUT_S = 0.5
MAX_RESPONSE_BYTES = 256 * 1024


@dataclass
class Rig:
    mock: Starlette
    server: LiveServer
    tasks_at_rest: int = 0


@contextmanager
def serving(settings: Settings, read_timeout_s: float) -> Iterator[Rig]:
    mock = create_mock_app(MockConfig(api_key=UPSTREAM_KEY))
    with LiveServer(mock) as upstream:
        own = make_settings(settings.database.url, upstream.url)
        own.upstream.read_timeout_s = read_timeout_s
        own.upstream.max_response_bytes = MAX_RESPONSE_BYTES
        with LiveServer(create_app(own)) as server:
            yield Rig(mock, server)


@pytest.fixture(scope="module")
def rig(settings: Settings) -> Iterator[Rig]:
    """A Tollgate of its own with short timeouts and a small answer limit, on a mock of its own."""
    with serving(settings, READ_TIMEOUT_S) as rig:
        yield rig


@pytest.fixture
async def tenant_with_budget(admin: Admin) -> tuple[Tenant, str]:
    tenant = await admin.tenant()
    return tenant, await admin.budget("key", tenant.key_id, "5")


async def at_rest(rig: Rig) -> tuple[int, int, int]:
    """Tasks in Tollgate's loop, upstream connections in use, open mock streams, once they settle."""
    connector = rig.server.app.state.gateway.upstream.session.connector  # type: ignore[attr-defined]
    assert isinstance(connector, aiohttp.BaseConnector)
    state = (0, 0, 0)
    # Up to 20 s: under load the mock can take seconds to notice a connection Tollgate dropped.
    for _ in range(400):
        state = (rig.server.task_count(), len(connector._acquired), rig.mock.state.open_streams)
        if state[0] <= rig.tasks_at_rest and state[1:] == (0, 0):
            break
        await asyncio.sleep(0.05)
    return state


@pytest.fixture
def rested(rig: Rig) -> Rig:
    if not rig.tasks_at_rest:
        rig.tasks_at_rest = rig.server.task_count()
    return rig
