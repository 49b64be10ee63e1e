from __future__ import annotations

from sqlalchemy import CheckConstraint, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class RateLimit(TimestampMixin, Base):
    """Request, token and concurrency limits on a key, a user or a team. The counters live in
    Redis (or in process); this row is only the configuration."""

    __tablename__ = "rate_limits"
    __table_args__ = (
        UniqueConstraint("scope", "scope_id", name="uq_rate_limits_scope"),
        CheckConstraint("scope IN ('key', 'user', 'team')", name="scope"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    scope_id: Mapped[str] = mapped_column(String(40), nullable=False)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    concurrent: Mapped[int | None] = mapped_column(Integer)
