from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import UTCDateTime, utcnow
from app.models.base import Base, TimestampMixin

SCOPES = ("key", "user", "team")
PERIODS = ("daily", "weekly", "monthly", "lifetime")


class Budget(TimestampMixin, Base):
    """A spend limit on a key, a user or a team, for one calendar period.

    The money columns move only through conditional UPDATEs in ``app.spend``; the invariant
    ``spent + reserved <= limit`` is enforced by the reservation statement itself.
    """

    __tablename__ = "budgets"
    __table_args__ = (
        UniqueConstraint("scope", "scope_id", "period", name="uq_budgets_scope_period"),
        CheckConstraint("scope IN ('key', 'user', 'team')", name="scope"),
        CheckConstraint("period IN ('daily', 'weekly', 'monthly', 'lifetime')", name="period"),
        CheckConstraint("limit_micros >= 0 AND spent_micros >= 0 AND reserved_micros >= 0", name="money"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    scope_id: Mapped[str] = mapped_column(String(40), nullable=False)
    period: Mapped[str] = mapped_column(String(16), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    limit_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    soft_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    spent_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    reserved_micros: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # Start of the period that spent_micros belongs to; a reservation in a later period resets it.
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow, onupdate=utcnow)
