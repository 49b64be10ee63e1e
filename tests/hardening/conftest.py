"""Helpers for hostile input: a snapshot of every table's row count, and OpenAI's envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Tenant, make_settings, settled

# Large enough for 10,000 messages and 1 MB strings, which the suite's 64 KiB limit refuses first.
ROOMY_BODY_BYTES = 4 * 1024 * 1024


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    """Every table's row count, once the servers have written what they queued."""
    await settled()
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'")
            )
        ).scalars()
        query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM ONLY \"{t}\"" for t in tables)  # noqa: S608
        return {str(row[0]): int(row[1]) for row in (await conn.execute(text(query))).all()}


class Unchanged:
    """``async with Unchanged(engine):`` fails if the block added or removed a row anywhere."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.before: dict[str, int] = {}

    async def __aenter__(self) -> None:
        self.before = await row_counts(self.engine)

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            after = await row_counts(self.engine)
            changed = {t: after[t] - self.before.get(t, 0) for t in after if after[t] != self.before.get(t, 0)}
            assert not changed, f"rows were written: {changed}"


def assert_refused(response: httpx.Response, status: int | None = None, code: str | None = None) -> dict[str, object]:
    """A clear 4xx in OpenAI's envelope, and no trace of the upstream key."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    if status is not None:
        assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, object] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert len(response.content) < 4096, "an error must not echo a huge input back"
    if code is not None:
        assert error["code"] == code, error
    assert UPSTREAM_KEY not in response.text
    return error


@pytest.fixture(scope="module")
def roomy(settings: Settings) -> Iterator[LiveServer]:
    """A Tollgate whose body limit lets big-but-declared-legal bodies through to validation."""
    config = make_settings(settings.database.url, settings.upstream.base_url.removesuffix("/v1"))
    config.gateway.max_body_bytes = ROOMY_BODY_BYTES
    with LiveServer(create_app(config)) as server:
        yield server


@pytest.fixture
async def http(tollgate: LiveServer, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant.http(tollgate.url) as client:
        yield client


@pytest.fixture
async def roomy_http(roomy: LiveServer, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    async with tenant.http(roomy.url) as client:
        yield client
