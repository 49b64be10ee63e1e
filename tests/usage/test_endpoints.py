"""The usage routes end to end: real calls through Tollgate, then reports and the ledger as a
user and as an admin sees them."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import pytest

from app.kit.db_types import utcnow
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, settled, usage_rows

MESSAGES = [{"role": "user", "content": "hello there"}]


async def _calls(tollgate: LiveServer, tenant: Tenant, n: int, **mock: Any) -> None:
    client = tenant.client(tollgate.url)
    for _ in range(n):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, extra_body={"mock": mock})  # type: ignore[arg-type]
    await settled()


def _today() -> dict[str, str]:
    now = utcnow()
    return {"start": (now - timedelta(hours=2)).isoformat(), "end": (now + timedelta(minutes=1)).isoformat()}


async def _get(http: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_users_see_only_their_own_usage_and_rows(tollgate: LiveServer, admin: Admin, engine: Any) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    await _calls(tollgate, alice, 2)
    await _calls(tollgate, bob, 1)
    async with alice.http(tollgate.url) as http:
        mine = await _get(http, "/v1/usage", group_by="user,key,model", bucket="hour", **_today())
        records = await _get(http, "/v1/usage/records", limit=1)
        rest = await _get(http, "/v1/usage/records", after=records["last_id"])
        # Bob's row id as a cursor fails exactly like an unknown id.
        [bobs] = await usage_rows(engine, bob.key_id)
        foreign = await http.get("/v1/usage/records", params={"after": str(bobs.id)})
        unknown = await http.get("/v1/usage/records", params={"after": "999999999999"})
        # A filter naming someone else's key finds nothing.
        theirs = await _get(http, "/v1/usage", key=bob.key_id, **_today())
    assert [g["group"] for g in mine["data"]] == [{"user": alice.user_id, "key": alice.key_id, "model": PRICED_MODEL}]
    assert mine["totals"]["requests"] == 2
    rows = await usage_rows(engine, alice.key_id)
    assert mine["totals"]["cost_micros"] == sum(r.cost_micros for r in rows)
    assert mine["totals"]["prompt_tokens"] == sum(r.prompt_tokens for r in rows)
    assert records["has_more"] and not rest["has_more"]
    listed = [r["request_id"] for r in records["data"] + rest["data"]]
    assert sorted(listed) == sorted(r.request_id for r in rows)
    assert all(r["user_id"] == alice.user_id for r in records["data"] + rest["data"])
    assert foreign.status_code == unknown.status_code == 400
    assert foreign.json()["error"]["message"].replace(str(bobs.id), "X") == unknown.json()["error"]["message"].replace(
        "999999999999", "X"
    )
    assert theirs["totals"]["requests"] == 0 and theirs["data"] == []

    # The admin sees everyone, and filters by user name or id, or by key.
    users: set[str] = set()
    cursor: dict[str, str] = {}
    while True:  # the whole suite's users: every page, through next_cursor
        everyone = await _get(admin.http, "/admin/usage", group_by="user", limit=5, **_today(), **cursor)
        users |= {g["group"]["user"] for g in everyone["data"]}
        if not everyone["has_more"]:
            break
        cursor = {"after": everyone["next_cursor"]}
    assert {alice.user_id, bob.user_id} <= users
    only_bob = await _get(admin.http, "/admin/usage", user=bob.user_name, **_today())
    assert only_bob["totals"]["requests"] == 1
    bob_rows = await _get(admin.http, "/admin/usage/records", key=bob.key_id)
    assert [r["id"] for r in bob_rows["data"]] == [str(bobs.id)]


async def test_report_cost_equals_what_the_budget_counted(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("user", tenant.user_id, "5", period="monthly", timezone="Europe/Berlin")
    await _calls(tollgate, tenant, 3, cached_tokens=2)
    state = await admin.budget_state(budget_id)
    month = {"start": state["period_start"], "end": state["period_end"]}
    report = await _get(
        admin.http, "/admin/usage", user=tenant.user_id, bucket="month", timezone="Europe/Berlin", **month
    )
    assert report["totals"]["requests"] == 3
    assert report["totals"]["cost_micros"] == state["spent_micros"] > 0
    assert report["totals"]["cost_usd"] == f"{state['spent_micros'] / 1e6:.6f}"


async def test_csv_has_the_numbers_of_the_json(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    await _calls(tollgate, tenant, 2)
    with pytest.raises(openai.InternalServerError):
        await _calls(tollgate, tenant, 1, status=500)
    await settled()
    params = {"group_by": "status,model", "bucket": "hour", **_today()}
    async with tenant.http(tollgate.url) as http:
        as_json = await _get(http, "/v1/usage", **params)
        by_param = await http.get("/v1/usage", params={**params, "format": "csv"})
        by_accept = await http.get("/v1/usage", params=params, headers={"accept": "text/csv"})
    assert by_param.headers["content-type"].startswith("text/csv")
    assert by_param.text == by_accept.text
    table = list(csv.DictReader(io.StringIO(by_param.text)))
    expected = [
        {"status": g["group"]["status"], "model": g["group"]["model"], **b}
        for g in as_json["data"]
        for b in g["buckets"]
    ]
    assert len(table) == len(expected) >= 2
    for line, want in zip(table, expected, strict=True):
        assert datetime.fromisoformat(line["start_time"]) == datetime.fromisoformat(want["start_time"])
        for column in ("status", "model", "requests", "prompt_tokens", "cost_micros", "cost_usd"):
            assert line[column] == str(want[column]), column
    assert {r["status"] for r in table} == {"ok", "upstream_error"}


async def test_bad_report_parameters_are_refused(tollgate: LiveServer, tenant: Tenant) -> None:
    now = datetime.now(UTC)
    day = {"start": (now - timedelta(days=1)).isoformat(), "end": now.isoformat()}
    cases = {
        "timezone": {**day, "timezone": "Mars/Olympus_Mons"},
        "end": {"start": now.isoformat(), "end": (now - timedelta(hours=1)).isoformat()},
        "group_by": {**day, "group_by": "model,colour"},
        "after": {**day, "group_by": "model", "after": "bm90IGEgY3Vyc29y"},
        "start": {"start": "yesterday"},
    }
    too_long = {"start": (now - timedelta(days=40)).isoformat(), "end": now.isoformat(), "bucket": "hour"}
    async with tenant.http(tollgate.url) as http:
        for param, query in cases.items():
            response = await http.get("/v1/usage", params=query)
            assert response.status_code == 400, (param, response.text)
            assert response.json()["error"]["param"] == param
        span = await http.get("/v1/usage", params=too_long)
        assert span.status_code == 400 and span.json()["error"]["param"] == "end"
        assert (await http.get("/admin/usage", params=day)).status_code == 403
        assert (await http.get("/admin/usage/records")).status_code == 403
    assert (await httpx.AsyncClient(base_url=tollgate.url).get("/v1/usage", params=day)).status_code == 401
