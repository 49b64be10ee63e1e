"""The report routes on the zero-setup SQLite default: the same numbers from rollup and raw rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.processes import TollgateProcess, clean_env
from tests.fixtures.servers import UPSTREAM_KEY

pytestmark = pytest.mark.sqlite


@pytest.fixture
def served(tmp_path: Path, mock_upstream: LiveServer) -> Iterator[TollgateProcess]:
    env = clean_env(OPENAI_BASE_URL=mock_upstream.url + "/v1", OPENAI_API_KEY=UPSTREAM_KEY)
    server = TollgateProcess(tmp_path, env)
    yield server
    server.stop()


def test_usage_report_and_records_on_sqlite(served: TollgateProcess) -> None:
    admin_key = served.log.read_text().split("store it now):", 1)[1].split()[0]
    admin = httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=10)
    assert admin.post("/admin/users", json={"name": "carol"}).status_code == 201
    key = admin.post("/admin/keys", json={"user": "carol"}).json()
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=key["key"], max_retries=0)
    for model in ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    user = httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {key['key']}"}, timeout=10)
    deadline = time.monotonic() + 10
    while len(user.get("/v1/usage/records").json()["data"]) < 3:  # settlement is written after the answer
        assert time.monotonic() < deadline
        time.sleep(0.05)

    now = datetime.now(UTC)
    # Whole hours (rollup) and the partial hours at both ends (raw rows).
    window = {
        "start": (now - timedelta(hours=3, minutes=10)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }
    params = {**window, "group_by": "model", "bucket": "hour", "timezone": "Europe/Berlin"}
    auto = user.get("/v1/usage", params=params).json()
    raw = user.get("/v1/usage", params={**params, "source": "raw"}).json()
    assert auto["source"] != "raw" and raw["source"] == "raw"
    assert {k: v for k, v in auto.items() if k != "source"} == {k: v for k, v in raw.items() if k != "source"}
    assert {g["group"]["model"]: g["totals"]["requests"] for g in auto["data"]} == {"gpt-4o": 1, "gpt-4o-mini": 2}
    rows = user.get("/v1/usage/records").json()["data"]
    assert auto["totals"]["cost_micros"] == sum(r["cost_micros"] for r in rows) > 0
    lines = user.get("/v1/usage", params={**params, "format": "csv"}).text.strip().splitlines()
    assert lines[0].startswith("model,start_time,end_time,requests") and len(lines) == 1 + sum(
        len(g["buckets"]) for g in auto["data"]
    )
    everyone = admin.get("/admin/usage", params={**window, "user": "carol"}).json()
    assert everyone["totals"] == auto["totals"]
