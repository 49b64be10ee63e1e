"""What the audit tests share: a fresh admin per test (so its events are its own) and the rows."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import AuditEvent
from tests.fixtures.servers import Admin, Tenant

_names = itertools.count(1)


async def new_admin(admin: Admin) -> Tenant:
    """A second admin user with its own key: the actor whose events a test looks for."""
    name = f"support-{next(_names)}-{id(admin) % 10000}"
    user = await admin.http.post("/admin/users", json={"name": name, "role": "admin"})
    assert user.status_code == 201, user.text
    key = await admin.http.post("/admin/keys", json={"user": name})
    assert key.status_code == 201, key.text
    return Tenant(key.json()["key"], key.json()["id"], user.json()["id"], name)


async def audit_rows(engine: AsyncEngine, **where: Any) -> list[AuditEvent]:
    """Events matching ``column=value`` pairs, oldest first."""
    statement = select(AuditEvent.__table__)
    for column, value in where.items():
        statement = statement.where(getattr(AuditEvent, column) == value)
    async with engine.connect() as conn:
        result = await conn.execute(statement.order_by(AuditEvent.created_at, AuditEvent.id))
        return [AuditEvent(**row._mapping) for row in result]


def summary(event: AuditEvent) -> tuple[str | None, ...]:
    return (event.action, event.target_type, event.target_id, event.owner_id)


async def event_of(engine: AsyncEngine, request_id: str) -> AuditEvent:
    """The one event a request wrote."""
    events = await audit_rows(engine, request_id=request_id)
    assert len(events) == 1, [summary(e) for e in events]
    return events[0]


async def support_event(engine: AsyncEngine, actor: Tenant, request_id: str) -> tuple[str | None, ...]:
    """The one event a support request wrote, checked to name its admin; as ``summary``."""
    event = await event_of(engine, request_id)
    assert (event.source, event.actor_user_id, event.actor_key_id) == ("api", actor.user_id, actor.key_id)
    return summary(event)


async def assert_nowhere_in_trail(engine: AsyncEngine, *secrets: str) -> None:
    """No column of any event holds any of ``secrets`` (keys, request or file content)."""
    async with engine.connect() as conn:
        rows = [str(tuple(row)) for row in await conn.execute(select(AuditEvent.__table__))]
    trail = "\n".join(rows)
    for secret in secrets:
        assert secret not in trail
