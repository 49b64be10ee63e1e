from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin


class Batch(TimestampMixin, Base):
    """The owner of an upstream batch and the money held for it.

    ``request_id`` names both the budget lease that holds the batch's estimated cost (alive until
    ``lease_expires_at``, well past the batch's own deadline) and the ledger row its settlement
    writes. ``settled_at`` is set once, by whoever settles it (poller or a client's retrieve)."""

    __tablename__ = "batches"
    __table_args__ = (
        Index("ix_batches_user_id_created_at", "user_id", "created_at"),
        Index("ix_batches_settled_at", "settled_at"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str | None] = mapped_column(String(40))
    request_id: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    input_file_id: Mapped[str] = mapped_column(String(100), nullable=False)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    lease_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
