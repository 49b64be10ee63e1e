from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin


class FineTuningJob(TimestampMixin, Base):
    """A fine-tuning job created through Tollgate: its owner, the money held for it, and the last
    job object upstream returned (what the caller's list shows).

    The reservation is a budget lease named by the job id, held while the job runs; it is settled
    (trained tokens at the training price) once, when the job is seen finished, and ``settled_at``
    says so. ``next_poll_at`` is when a replica's poller may next claim the job.
    """

    __tablename__ = "fine_tuning_jobs"
    __table_args__ = (
        Index("ix_fine_tuning_jobs_user_id_created_at", "user_id", "created_at"),
        Index("ix_fine_tuning_jobs_next_poll_at", "next_poll_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str | None] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[str] = mapped_column(String(32), nullable=False)
    training_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    n_epochs: Mapped[int] = mapped_column(Integer, nullable=False)
    estimated_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    trained_tokens: Mapped[int | None] = mapped_column(BigInteger)
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    fine_tuned_model: Mapped[str | None] = mapped_column(String(200))
    job: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    next_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
