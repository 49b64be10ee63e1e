from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class ResponseRecord(TimestampMixin, Base):
    """The owner of a Responses API object created through Tollgate. The response itself is
    stored upstream; this row is what lets Tollgate refuse another tenant's id."""

    __tablename__ = "responses"
    __table_args__ = (Index("ix_responses_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # Input plus output tokens of this response: what a later `previous_response_id` call carries
    # upstream as context, and so must be reserved for.
    context_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
