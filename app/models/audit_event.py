from __future__ import annotations

from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType
from app.models.base import Base, TimestampMixin


class AuditEvent(TimestampMixin, Base):
    """One admin action, appended in the transaction of the change it records and never changed.

    No foreign keys: the trail must outlive what it names (a deleted budget, a revoked key, an
    object removed upstream). ``detail`` is small and never holds a secret or a request body.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created_at", "created_at"),
        Index("ix_audit_events_actor_user_id_created_at", "actor_user_id", "created_at"),
        Index("ix_audit_events_owner_id_created_at", "owner_id", "created_at"),
        Index("ix_audit_events_target_type_target_id", "target_type", "target_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    # "api" (an admin key), "cli" (the operator's shell) or "system" (Tollgate's own bootstrap).
    source: Mapped[str] = mapped_column(String(10), nullable=False)
    actor_key_id: Mapped[str | None] = mapped_column(String(40))
    actor_user_id: Mapped[str | None] = mapped_column(String(40))
    target_type: Mapped[str] = mapped_column(String(40), nullable=False)
    target_id: Mapped[str | None] = mapped_column(String(200))
    # The user the target belongs to; null when it belongs to nobody (a team, an upstream) or
    # when nobody is known to own it (an object made upstream outside Tollgate).
    owner_id: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
