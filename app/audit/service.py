"""Writing and reading the audit trail.

``record`` adds the event to the caller's session, so it commits (or rolls back) with the change
it records: no change without its event, no event without its change. It never commits itself.
``detail`` is small and safe to show: never a key's plaintext, an upstream key or a request body.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.repository import UserRepository
from app.audit.repository import AuditRepository
from app.audit.schemas import Actor, AuditFilter
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.kit.logging import request_id_var
from app.kit.pagination import PageParams, cursor_anchor
from app.models import AuditEvent


async def record(
    session: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: str | None,
    *,
    owner_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    event = AuditEvent(
        id=new_id("audit"),
        created_at=utcnow(),
        action=action,
        source=actor.source,
        actor_key_id=actor.key_id,
        actor_user_id=actor.user_id,
        target_type=target_type,
        target_id=target_id,
        owner_id=owner_id,
        request_id=request_id_var.get(),
        detail=detail or {},
    )
    AuditRepository(session).append(event)
    return event


async def page(session: AsyncSession, found: AuditFilter, params: PageParams) -> tuple[list[AuditEvent], bool]:
    """Newest first. ``actor`` and ``owner`` may name a user by id or by name."""
    found = replace(found, actor=await _user_id(session, found.actor), owner=await _user_id(session, found.owner))
    repo = AuditRepository(session)
    anchor = await cursor_anchor(params, repo.get_by_id, "audit event")
    rows, has_more = await repo.page(found, params, anchor)
    return list(rows), has_more


async def _user_id(session: AsyncSession, ref: str | None) -> str | None:
    """A user name becomes its id; anything else (a key id, an unknown name) is matched as given."""
    if ref is None or ref.startswith("key_"):
        return ref
    user = await UserRepository(session).get_by_ref(ref)
    return user.id if user is not None else ref
