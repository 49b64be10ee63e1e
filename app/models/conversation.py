from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType
from app.models.base import Base, TimestampMixin


class Conversation(TimestampMixin, Base):
    """The owner of a Conversations API object (stored upstream), with the metadata and creation
    time Tollgate lists it by: OpenAI cannot list a caller's conversations, Tollgate can."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    # Upstream's creation time (Unix seconds), as shown; rows are ordered by Tollgate's own
    # ``created_at``, whose microseconds keep conversations made in the same second in order.
    upstream_created_at: Mapped[int] = mapped_column(Integer, nullable=False)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    # An upper bound on the tokens of the conversation's items: a response in this conversation
    # sends them all upstream as input, so they are reserved for.
    context_tokens: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
