"""``GET /admin/audit``: filters, keyset pagination newest first, admins only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.audit.helpers import new_admin
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant


async def _events(http: httpx.AsyncClient, **query: Any) -> dict[str, Any]:
    response = await http.get("/admin/audit", params=query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _busy_admin(admin: Admin, tollgate: LiveServer) -> tuple[Tenant, dict[str, str]]:
    """An admin that made a user, a key, a budget, changed it and revoked the key: five events."""
    support = await new_admin(admin)
    name = f"audited-{support.user_name}"
    async with support.http(tollgate.url) as http:
        user = (await http.post("/admin/users", json={"name": name})).json()
        key = (await http.post("/admin/keys", json={"user": name})).json()
        body = {"scope": "user", "scope_id": name, "period": "weekly", "limit_usd": "3"}
        budget = (await http.post("/admin/budgets", json=body)).json()
        await http.patch(f"/admin/budgets/{budget['id']}", json={"limit_usd": "4"})
        await http.post(f"/admin/keys/{key['id']}/revoke")
    return support, {"user": user["id"], "user_name": name, "key": key["id"], "budget": budget["id"]}


async def test_an_actors_events_newest_first(tollgate: LiveServer, admin: Admin) -> None:
    support, _ = await _busy_admin(admin, tollgate)
    page = await _events(admin.http, actor=support.user_name)
    assert [e["action"] for e in page["data"]] == [
        "key.revoked",
        "budget.updated",
        "budget.created",
        "key.created",
        "user.created",
    ]
    assert page["has_more"] is False and page["object"] == "list"
    first = page["data"][0]
    assert (first["object"], first["actor_user_id"], first["actor_key_id"]) == (
        "audit_event",
        support.user_id,
        support.key_id,
    )
    assert first["request_id"].startswith("req_") and first["source"] == "api"
    # The actor by id or by key id finds the same events.
    assert (await _events(admin.http, actor=support.user_id))["data"] == page["data"]
    assert (await _events(admin.http, actor=support.key_id))["data"] == page["data"]


async def test_filters(tollgate: LiveServer, admin: Admin) -> None:
    support, made = await _busy_admin(admin, tollgate)
    actor = support.user_id
    budget = await _events(admin.http, actor=actor, action="budget.*")
    assert [e["action"] for e in budget["data"]] == ["budget.updated", "budget.created"]
    exact = await _events(admin.http, actor=actor, action="budget.created")
    assert [e["target_id"] for e in exact["data"]] == [made["budget"]]
    keyed = await _events(admin.http, target_type="api_key", target_id=made["key"])
    assert [e["action"] for e in keyed["data"]] == ["key.revoked", "key.created"]
    # Everything that bears on the user, by name: itself, its key, its budget.
    owned = await _events(admin.http, owner=made["user_name"])
    assert len(owned["data"]) == 5 and {e["owner_id"] for e in owned["data"]} == {made["user"]}

    everything = (await _events(admin.http, actor=actor))["data"]
    middle = everything[2]["created_at"]
    newer = await _events(admin.http, actor=actor, since=middle)
    assert [e["id"] for e in newer["data"]] == [e["id"] for e in everything[:3]]
    older = await _events(admin.http, actor=actor, until=middle)
    assert [e["id"] for e in older["data"]] == [e["id"] for e in everything[3:]]
    assert (await _events(admin.http, actor="nobody-at-all"))["data"] == []


async def test_keyset_pages_cover_every_event_once(tollgate: LiveServer, admin: Admin) -> None:
    support, _ = await _busy_admin(admin, tollgate)
    everything = [e["id"] for e in (await _events(admin.http, actor=support.user_id))["data"]]
    seen: list[str] = []
    after = None
    while True:
        page = await _events(admin.http, actor=support.user_id, limit=2, **({"after": after} if after else {}))
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == everything
    back = await _events(admin.http, actor=support.user_id, limit=2, before=everything[4])
    assert [e["id"] for e in back["data"]] == everything[2:4]


async def test_bad_queries_are_openai_style_400s(admin: Admin) -> None:
    for query in ({"after": "audit_unknown"}, {"limit": "0"}, {"limit": "101"}, {"since": "yesterday"}):
        response = await admin.http.get("/admin/audit", params=query)
        assert response.status_code == 400, (query, response.text)
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


async def test_admins_only(tollgate: LiveServer, tenant: Tenant) -> None:
    async with tenant.http(tollgate.url) as http:
        response = await http.get("/admin/audit")
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "invalid_request_error"
    async with httpx.AsyncClient(base_url=tollgate.url) as anonymous:
        assert (await anonymous.get("/admin/audit")).status_code == 401


@pytest.mark.parametrize("route", ["/admin/users", "/admin/keys"])
async def test_reading_the_admin_api_is_not_audited(tollgate: LiveServer, admin: Admin, route: str) -> None:
    support = await new_admin(admin)
    async with support.http(tollgate.url) as http:
        assert (await http.get(route)).status_code == 200
        assert (await http.get("/admin/audit")).status_code == 200
    assert (await _events(admin.http, actor=support.user_id))["data"] == []
