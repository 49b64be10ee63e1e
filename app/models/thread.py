from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType
from app.models.base import Base, TimestampMixin


class Thread(TimestampMixin, Base):
    """A conversation thread, owned by one user. Its messages go with it when it is deleted."""

    __tablename__ = "threads"
    __table_args__ = (Index("ix_threads_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
