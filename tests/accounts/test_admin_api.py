"""The admin REST API: teams, users, keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.kit.db_types import utcnow
from tests.fixtures.servers import Admin


async def test_team_user_key_workflow(admin: Admin) -> None:
    team = await admin.http.post("/admin/teams", json={"name": "research-x"})
    assert team.status_code == 201
    user = await admin.http.post("/admin/users", json={"name": "carol-x", "team": "research-x"})
    assert user.status_code == 201
    assert user.json()["team_id"] == team.json()["id"]

    expires = (utcnow() + timedelta(days=30)).isoformat()
    created = await admin.http.post(
        "/admin/keys", json={"user": "carol-x", "name": "laptop", "models": ["gpt-4o-mini"], "expires_at": expires}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["key"].startswith("tg-") and len(body["key"]) >= 3 + 43
    assert body["display_prefix"] == body["key"][:11]

    listed = (await admin.http.get("/admin/keys", params={"user": "carol-x"})).json()
    assert [k["id"] for k in listed["data"]] == [body["id"]]
    assert "key" not in listed["data"][0], "the secret is shown once, at creation only"
    assert body["key"] not in (await admin.http.get(f"/admin/keys/{body['id']}")).text

    users = (await admin.http.get("/admin/users", params={"team": "research-x"})).json()["data"]
    assert [u["name"] for u in users] == ["carol-x"]
    assert (await admin.http.get("/admin/teams")).json()["object"] == "list"


async def test_duplicates_are_409(admin: Admin) -> None:
    assert (await admin.http.post("/admin/teams", json={"name": "dup-team"})).status_code == 201
    conflict = await admin.http.post("/admin/teams", json={"name": "dup-team"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/admin/users", {"name": ""}, "name"),
        ("/admin/users", {"name": "has space"}, "name"),
        ("/admin/users", {"name": "ok-name", "role": "root"}, "role"),
        ("/admin/users", {"name": "ok-name", "extra": 1}, "extra"),
        ("/admin/keys", {"user": "nobody-here"}, "user"),
        ("/admin/keys", {"user": "admin", "models": []}, "models"),
        ("/admin/keys", {"user": "admin", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ("/admin/keys", {"user": "admin", "expires_at": "2999-01-01T00:00:00"}, "expires_at"),
    ],
)
async def test_bad_admin_input_is_a_clear_4xx(admin: Admin, path: str, body: dict[str, object], param: str) -> None:
    response = await admin.http.post(path, json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["param"] == param


async def test_unknown_ids_are_404(admin: Admin) -> None:
    assert (await admin.http.post("/admin/keys/key_missing/revoke")).status_code == 404
    assert (await admin.http.get("/admin/users/user_missing")).status_code == 404
    assert (await admin.http.post("/admin/users", json={"name": "u-x9", "team": "no-team"})).status_code == 404
