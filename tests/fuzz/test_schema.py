"""Schemathesis against Tollgate's own OpenAPI document, every route, against the live server.

Checks on every answer: no 5xx; the status, content type and body are the documented ones; a
failure is OpenAI's error envelope; the upstream key is in no answer; and a refused request
wrote no row (no ledger row, lease, owner row or anything else).

Bounded for CI: a few examples per route and key (TOLLGATE_FUZZ_EXAMPLES raises it locally).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from app.main import create_app
from tests.fixtures.database import TEST_DATABASE_URL
from tests.fixtures.live_server import RUNNING, LiveServer
from tests.fixtures.servers import ADMIN_KEY, UPSTREAM_KEY, Admin, Tenant, make_settings

EXAMPLES = int(os.environ.get("TOLLGATE_FUZZ_EXAMPLES", "6"))
# The document the server serves, built without starting it (building the app opens nothing).
DOCUMENT = create_app(make_settings(TEST_DATABASE_URL, "http://127.0.0.1:9")).openapi()
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True},
        # The coverage phase sends every boundary value of every field: minutes, not seconds.
        # TOLLGATE_FUZZ_COVERAGE=1 turns it on for a thorough local run.
        "phases": {"coverage": {"enabled": os.environ.get("TOLLGATE_FUZZ_COVERAGE") == "1"}},
        # 413 is how Tollgate refuses a body over the size limit, before it is read.
        "checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 403, 404, 405, 409, 413, 415, 429]}},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
_BAD_KEYS = itertools.cycle(
    [
        {"authorization": "Bearer tg-" + "A" * 43},
        {"authorization": "Bearer "},
        {"authorization": "Basic dXNlcjpwYXNz"},
        {"authorization": "Bearer sk-not-a-tollgate-key-\xe9"},
        {},
    ]
)


class RowCounter:
    """Row counts of every table, over one connection kept open on a loop of its own (the fuzz
    tests are synchronous; the server runs in another thread)."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="row-counter", daemon=True)
        self.thread.start()
        self.conn: asyncpg.Connection = self._run(asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql")))
        tables = self._run(
            self.conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        )
        self.query = " UNION ALL ".join(
            f"SELECT '{r['tablename']}' AS t, count(*) AS n FROM ONLY \"{r['tablename']}\""  # noqa: S608
            for r in tables
        )

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def counts(self) -> dict[str, int]:
        """Once every running Tollgate has written the settlements it queued."""
        deadline = time.monotonic() + 10
        for server in list(RUNNING):
            spend = getattr(getattr(server.app, "state", None), "spend", None)
            while spend is not None and not spend.settlements.idle:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        return {r["t"]: r["n"] for r in self._run(self.conn.fetch(self.query))}

    def close(self) -> None:
        self._run(self.conn.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def rows(database_url: str) -> Iterator[RowCounter]:
    counter = RowCounter(database_url)
    yield counter
    counter.close()


def _check_answer(response: Any, rows: RowCounter | None = None, before: dict[str, int] | None = None) -> None:
    text = response.text
    assert UPSTREAM_KEY not in text
    assert UPSTREAM_KEY not in repr(dict(response.headers))
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, text
    assert set(body["error"]) == {"message", "type", "param", "code"}, text
    assert isinstance(body["error"]["message"], str)
    if rows is not None and before is not None:
        after = rows.counts()
        written = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
        assert not written, f"a refused request ({response.status_code}) wrote rows: {written}"


@pytest.fixture(scope="module")
async def fuzz_tenant(admin: Admin) -> Tenant:
    return await admin.tenant()


@schema.parametrize()
def test_with_a_tenant_key(
    case: schemathesis.Case[Any], tollgate: LiveServer, fuzz_tenant: Tenant, rows: RowCounter
) -> None:
    before = rows.counts()
    response = case.call(base_url=tollgate.url, headers={"authorization": f"Bearer {fuzz_tenant.token}"}, timeout=30)
    case.validate_response(response, checks=CHECKS)
    _check_answer(response, rows, before)


@schema.parametrize()
def test_with_bad_keys(case: schemathesis.Case[Any], tollgate: LiveServer, rows: RowCounter) -> None:
    before = rows.counts()
    response = case.call(base_url=tollgate.url, headers=next(_BAD_KEYS), timeout=30)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance])
    # Routing comes before authentication (an unsupported method is a 405 for anyone), and
    # FastAPI decodes a declared JSON body before any dependency runs, so a body that is not JSON
    # (or holds text Tollgate refuses) is a 400 even without a key. Never anything else.
    assert response.status_code in (400, 401, 405, 413), response.text
    _check_answer(response, rows, before)


@schema.include(path_regex="^/admin/", method="GET").parametrize()
def test_admin_reads_with_the_admin_key(case: schemathesis.Case[Any], tollgate: LiveServer) -> None:
    response = case.call(base_url=tollgate.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    case.validate_response(response, checks=CHECKS)
    _check_answer(response)


def test_the_fuzzed_document_is_the_one_served(tollgate: LiveServer) -> None:
    import httpx

    served = httpx.get(tollgate.url + "/openapi.json").json()
    assert served == DOCUMENT
    operations = [op for ops in served["paths"].values() for op in ops.values()]
    assert len(operations) > 50
    for operation in operations:
        assert "422" not in operation["responses"]
        assert operation["responses"]["4XX"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
