from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType
from app.models.base import Base, TimestampMixin


class VectorStore(TimestampMixin, Base):
    """The owner of an upstream vector store, and what Tollgate lists and bills it by.

    Every tenant shares the upstream key, so this row is what makes a store id someone's. The
    key and team it was created with are the budgets its storage is charged to; ``snapshot`` is
    the store object as upstream last showed it (what the caller's list shows)."""

    __tablename__ = "vector_stores"
    __table_args__ = (
        Index("ix_vector_stores_user_id_created_at", "user_id", "created_at"),
        Index("ix_vector_stores_metered_on", "metered_on"),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    api_key_id: Mapped[str] = mapped_column(String(40), nullable=False)
    team_id: Mapped[str | None] = mapped_column(String(40))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    # The last UTC day whose storage was charged; NULL until the first charge.
    metered_on: Mapped[date | None] = mapped_column(Date)
