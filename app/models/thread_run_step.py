from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin


class ThreadRunStep(TimestampMixin, Base):
    """What a run did, step by step, as OpenAI's ``thread.run.step``: a message it wrote or the
    function calls it made (and, once submitted, their outputs)."""

    __tablename__ = "thread_run_steps"
    __table_args__ = (Index("ix_thread_run_steps_run_id_created_at", "run_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(40), ForeignKey("thread_runs.id", ondelete="CASCADE"), nullable=False)
    thread_id: Mapped[str] = mapped_column(String(40), nullable=False)
    # Denormalised from the run so every lookup is owner-checked by one indexed condition.
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    assistant_id: Mapped[str] = mapped_column(String(40), nullable=False)
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    step_details: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
