from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import UTCDateTime
from app.models.base import Base, TimestampMixin


class File(TimestampMixin, Base):
    """Who owns an upstream file. Every tenant shares the upstream key, so upstream would hand any
    file to anyone: this row is what makes a file id someone's. ``created_at`` is when Tollgate
    recorded it (the listing order); ``upstream_created_at`` is the file object's own value."""

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    purpose: Mapped[str] = mapped_column(String(40), nullable=False)
    filename: Mapped[str] = mapped_column(String(1024), nullable=False)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    upstream_created_at: Mapped[int] = mapped_column(BigInteger, nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set on a fine-tune file Tollgate validated on its way in: its examples, their training
    # tokens (one epoch) and the longest example's tokens, so a job is priced without a download.
    tune_examples: Mapped[int | None] = mapped_column(Integer)
    tune_tokens: Mapped[int | None] = mapped_column(BigInteger)
    tune_longest: Mapped[int | None] = mapped_column(Integer)
