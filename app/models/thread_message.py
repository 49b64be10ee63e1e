from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin


class ThreadMessage(TimestampMixin, Base):
    __tablename__ = "thread_messages"
    __table_args__ = (Index("ix_thread_messages_thread_id_created_at", "thread_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(40), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False)
    # Denormalised from the thread so every lookup is owner-checked by one indexed condition.
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    # OpenAI's output shape: [{"type": "text", "text": {"value": ..., "annotations": []}}, ...]
    content: Mapped[list[Any]] = mapped_column(JSONType, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="completed")
    assistant_id: Mapped[str | None] = mapped_column(String(40))
    run_id: Mapped[str | None] = mapped_column(String(40))
    attachments: Mapped[list[Any] | None] = mapped_column(JSONType)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    incomplete_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
