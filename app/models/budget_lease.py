from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime, utcnow
from app.models.base import Base


class BudgetLease(Base):
    """Money reserved for one in-flight request, on every budget it touches.

    A lease ends in exactly one of: settlement (actual cost), release (upstream failed before
    any charge), or the reaper (expired: charged at the reserved amount, marked estimated). The
    row carries what the reaper needs to write the ledger row itself.
    """

    __tablename__ = "budget_leases"
    __table_args__ = (Index("ix_budget_leases_expires_at", "expires_at"),)

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    budget_ids: Mapped[list[str]] = mapped_column(JSONType, nullable=False)
    amount_micros: Mapped[int] = mapped_column(BigInteger, nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str | None] = mapped_column(String(40))
    endpoint: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    output_cap: Mapped[int] = mapped_column(Integer, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
