"""Every admin mutation writes exactly one audit event, in the transaction of the change."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.accounts import service as accounts
from app.accounts.schemas import UserCreate
from app.api_keys import service
from app.audit.schemas import CLI
from app.kit.crypto import hash_api_key
from app.models import ApiKey, AuditEvent, User
from tests.audit.helpers import assert_nowhere_in_trail, audit_rows, new_admin, summary
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Admin, Tenant


async def _one_event(engine: AsyncEngine, actor: Tenant, response: httpx.Response) -> AuditEvent:
    """The single event ``response``'s request wrote, checked to name its actor and request."""
    assert response.is_success, response.text
    [event] = await audit_rows(engine, request_id=response.headers["x-request-id"])
    assert (event.source, event.actor_user_id, event.actor_key_id) == ("api", actor.user_id, actor.key_id)
    return event


@pytest.fixture
async def support(admin: Admin) -> Tenant:
    return await new_admin(admin)


async def test_team_user_and_key_lifecycle(
    tollgate: LiveServer, admin: Admin, support: Tenant, engine: AsyncEngine
) -> None:
    async with support.http(tollgate.url) as http:
        team = await http.post("/admin/teams", json={"name": f"team-of-{support.user_name}"})
        event = await _one_event(engine, support, team)
        assert summary(event) == ("team.created", "team", team.json()["id"], None)
        assert event.detail == {"name": f"team-of-{support.user_name}"}

        user = await http.post("/admin/users", json={"name": f"u-{support.user_name}", "team": team.json()["id"]})
        user_id = user.json()["id"]
        event = await _one_event(engine, support, user)
        assert summary(event) == ("user.created", "user", user_id, user_id)
        assert event.detail == {"name": f"u-{support.user_name}", "role": "member", "team_id": team.json()["id"]}

        key = await http.post("/admin/keys", json={"user": user_id, "name": "ci", "models": ["gpt-4o-mini"]})
        event = await _one_event(engine, support, key)
        assert summary(event) == ("key.created", "api_key", key.json()["id"], user_id)
        assert event.detail["allowed_models"] == ["gpt-4o-mini"]
        assert event.detail["display_prefix"] == key.json()["display_prefix"]
        assert key.json()["key"] not in json.dumps(event.detail)

        revoked = await http.post(f"/admin/keys/{key.json()['id']}/revoke")
        event = await _one_event(engine, support, revoked)
        assert summary(event) == ("key.revoked", "api_key", key.json()["id"], user_id)
        # Revoking again changes nothing, so it records nothing.
        again = await http.post(f"/admin/keys/{key.json()['id']}/revoke")
        assert again.status_code == 200
        assert await audit_rows(engine, request_id=again.headers["x-request-id"]) == []


async def test_budget_lifecycle(tollgate: LiveServer, admin: Admin, support: Tenant, engine: AsyncEngine) -> None:
    owner = await admin.tenant()
    async with support.http(tollgate.url) as http:
        body = {"scope": "key", "scope_id": owner.key_id, "period": "monthly", "limit_usd": "5"}
        created = await http.post("/admin/budgets", json=body)
        budget_id = created.json()["id"]
        event = await _one_event(engine, support, created)
        # A key's budget bears on the key's user.
        assert summary(event) == ("budget.created", "budget", budget_id, owner.user_id)
        assert event.detail["limit_usd"] == "5.000000" and event.detail["scope_id"] == owner.key_id

        updated = await http.patch(f"/admin/budgets/{budget_id}", json={"limit_usd": "7.5", "soft_limit_usd": "6"})
        event = await _one_event(engine, support, updated)
        assert summary(event) == ("budget.updated", "budget", budget_id, owner.user_id)
        assert event.detail == {
            "changed": {
                "limit_usd": {"from": "5.000000", "to": "7.500000"},
                "soft_limit_usd": {"from": None, "to": "6.000000"},
            }
        }

        deleted = await http.delete(f"/admin/budgets/{budget_id}")
        event = await _one_event(engine, support, deleted)
        assert summary(event) == ("budget.deleted", "budget", budget_id, owner.user_id)
        assert event.detail["limit_usd"] == "7.500000"


async def test_rate_limit_lifecycle(tollgate: LiveServer, admin: Admin, support: Tenant, engine: AsyncEngine) -> None:
    owner = await admin.tenant()
    async with support.http(tollgate.url) as http:
        body: dict[str, Any] = {"scope": "user", "scope_id": owner.user_name, "rpm": 1000}
        created = await http.put("/admin/rate-limits", json=body)
        limit_id = created.json()["id"]
        event = await _one_event(engine, support, created)
        assert summary(event) == ("rate_limit.created", "rate_limit", limit_id, owner.user_id)
        assert event.detail == {
            "scope": "user",
            "scope_id": owner.user_id,
            "rpm": 1000,
            "tpm": None,
            "concurrent": None,
        }

        updated = await http.put("/admin/rate-limits", json={**body, "tpm": 900_000})
        event = await _one_event(engine, support, updated)
        assert summary(event) == ("rate_limit.updated", "rate_limit", limit_id, owner.user_id)
        assert event.detail["tpm"] == 900_000

        deleted = await http.delete(f"/admin/rate-limits/{limit_id}")
        event = await _one_event(engine, support, deleted)
        assert summary(event) == ("rate_limit.deleted", "rate_limit", limit_id, owner.user_id)


async def test_upstream_change_never_records_its_key(
    tollgate: LiveServer, support: Tenant, engine: AsyncEngine
) -> None:
    name = f"audit-{support.user_id[-8:]}"
    secret = "sk-never-in-the-trail-0123456789"
    # Disabled, so it never takes traffic from the other tests sharing this server.
    body = {"base_url": "https://ops:hunter2@example.invalid/v1", "api_key": secret, "enabled": False}
    async with support.http(tollgate.url) as http:
        put = await http.put(f"/admin/upstreams/{name}", json=body)
        event = await _one_event(engine, support, put)
        assert summary(event) == ("upstream.changed", "upstream", name, None)
        assert event.detail == {
            "base_url": "https://example.invalid/v1",
            "weight": 1,
            "models": [],
            "enabled": False,
            "api_key_set": True,
        }
        assert secret not in json.dumps(event.detail) and "hunter2" not in json.dumps(event.detail)

        deleted = await http.delete(f"/admin/upstreams/{name}")
        event = await _one_event(engine, support, deleted)
        assert summary(event) == ("upstream.deleted", "upstream", name, None)


async def test_failed_mutations_write_no_event(
    tollgate: LiveServer, admin: Admin, support: Tenant, engine: AsyncEngine
) -> None:
    owner = await admin.tenant()
    budget = {"scope": "user", "scope_id": owner.user_id, "period": "daily", "limit_usd": "1"}
    async with support.http(tollgate.url) as http:
        assert (await http.post("/admin/budgets", json=budget)).status_code == 201
        failures = [
            await http.post("/admin/users", json={"name": owner.user_name}),  # taken: 409
            await http.post("/admin/users", json={"name": "x", "team": "no-such-team"}),  # 404
            await http.post("/admin/keys", json={"user": "no-such-user"}),  # 404
            await http.post("/admin/keys/key_unknown/revoke"),  # 404
            await http.post("/admin/budgets", json=budget),  # the user has a daily budget: 409
            await http.patch("/admin/budgets/budget_unknown", json={"limit_usd": "2"}),  # 404
            await http.put("/admin/rate-limits", json={"scope": "team", "scope_id": "no-such-team", "rpm": 1}),
            await http.delete("/admin/rate-limits/rl_unknown"),  # 404
            await http.delete("/admin/upstreams/never-changed"),  # 404
        ]
    for response in failures:
        assert 400 <= response.status_code < 500, response.text
        assert await audit_rows(engine, request_id=response.headers["x-request-id"]) == []


async def test_a_change_whose_event_cannot_be_written_is_not_made(
    tollgate: LiveServer, support: Tenant, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with support.http(tollgate.url) as http:
        first = await http.post("/admin/teams", json={"name": f"t1-{support.user_name}"})
        [taken] = await audit_rows(engine, request_id=first.headers["x-request-id"])
        # Every new event now collides with an existing one, so writing it fails at commit.
        monkeypatch.setattr("app.audit.service.new_id", lambda prefix: taken.id)
        failed = await http.post("/admin/users", json={"name": f"lost-{support.user_name}"})
    assert failed.status_code >= 500
    async with engine.connect() as conn:
        assert (await conn.execute(select(User.id).where(User.name == f"lost-{support.user_name}"))).first() is None


async def test_the_cli_records_itself_as_the_actor(db_session: AsyncSession) -> None:
    user = await accounts.create_user(db_session, UserCreate(name="cli-made"), CLI)
    events = (await db_session.execute(select(AuditEvent).where(AuditEvent.target_id == user.id))).scalars().all()
    assert [(e.action, e.source, e.actor_user_id, e.actor_key_id) for e in events] == [
        ("user.created", "cli", None, None)
    ]


async def test_secrets_never_reach_the_trail(
    tollgate: LiveServer, admin: Admin, support: Tenant, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    async with support.http(tollgate.url) as http:
        key = (await http.post("/admin/keys", json={"user": tenant.user_id})).json()
    async with engine.connect() as conn:
        digest = await conn.scalar(select(ApiKey.digest).where(ApiKey.id == key["id"]))
    assert digest is not None
    await assert_nowhere_in_trail(engine, key["key"], digest, tenant.token, support.token, UPSTREAM_KEY)


async def test_bootstrap_changes_are_recorded_as_the_system(db_session: AsyncSession) -> None:
    secret = b"audit-test-secret"
    await service.ensure_admin(db_session, secret, "tg-env-audit-one-0000000000")
    await service.ensure_admin(db_session, secret, "tg-env-audit-one-0000000000")  # idempotent: nothing new
    await service.ensure_admin(db_session, secret, "tg-env-audit-two-0000000000")  # rotation
    keys = {}
    for token in ("tg-env-audit-one-0000000000", "tg-env-audit-two-0000000000"):
        digest = hash_api_key(token, secret)
        keys[token] = (await db_session.execute(select(ApiKey.id).where(ApiKey.digest == digest))).scalar_one()

    async def trail(key_id: str) -> list[tuple[str, str]]:
        statement = select(AuditEvent).where(AuditEvent.target_id == key_id).order_by(AuditEvent.created_at)
        return [(e.action, e.source) for e in (await db_session.execute(statement)).scalars()]

    assert await trail(keys["tg-env-audit-one-0000000000"]) == [("key.created", "system"), ("key.revoked", "system")]
    assert await trail(keys["tg-env-audit-two-0000000000"]) == [("key.created", "system")]


async def test_the_trail_refuses_updates_and_deletes(db_session: AsyncSession) -> None:
    await accounts.create_user(db_session, UserCreate(name="append-only"), CLI)
    await db_session.flush()
    for statement in (update(AuditEvent).values(action="user.deleted"), delete(AuditEvent)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db_session.begin_nested():
                await db_session.execute(statement)
