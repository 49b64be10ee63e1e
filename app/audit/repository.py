from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select

from app.audit.schemas import AuditFilter
from app.kit.pagination import PageParams, keyset_page
from app.kit.repository import RepositoryBase
from app.models import AuditEvent


class AuditRepository(RepositoryBase[AuditEvent]):
    """Append and read only: nothing here updates or deletes an event."""

    model = AuditEvent

    def append(self, event: AuditEvent) -> None:
        """Added to the session, written with the change it records when that flushes and commits."""
        self.session.add(event)

    async def page(
        self, found: AuditFilter, page: PageParams, anchor: tuple[datetime, str] | None
    ) -> tuple[Sequence[AuditEvent], bool]:
        return await keyset_page(self.session, _filtered(found), (AuditEvent.created_at, AuditEvent.id), page, anchor)


def _filtered(f: AuditFilter) -> Select[AuditEvent]:
    statement = select(AuditEvent)
    if f.since is not None:
        statement = statement.where(AuditEvent.created_at >= f.since)
    if f.until is not None:
        statement = statement.where(AuditEvent.created_at < f.until)
    if f.action is not None:
        # "budget.*" (or "budget.") selects a family of actions.
        family = f.action.removesuffix("*")
        if family.endswith("."):
            statement = statement.where(AuditEvent.action.startswith(family, autoescape=True))
        else:
            statement = statement.where(AuditEvent.action == f.action)
    if f.actor is not None:
        column = AuditEvent.actor_key_id if f.actor.startswith("key_") else AuditEvent.actor_user_id
        statement = statement.where(column == f.actor)
    if f.target_type is not None:
        statement = statement.where(AuditEvent.target_type == f.target_type)
    if f.target_id is not None:
        statement = statement.where(AuditEvent.target_id == f.target_id)
    if f.owner is not None:
        statement = statement.where(AuditEvent.owner_id == f.owner)
    return statement
