from __future__ import annotations

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType
from app.models.base import Base, TimestampMixin


class Assistant(TimestampMixin, Base):
    """An assistant, kept by Tollgate since OpenAI's Assistants API is gone. Owned by one user."""

    __tablename__ = "assistants"
    __table_args__ = (Index("ix_assistants_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    name: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str | None] = mapped_column(String(512))
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    tool_resources: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # "metadata" is taken by SQLAlchemy's declarative base; the column keeps OpenAI's name.
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    temperature: Mapped[float | None] = mapped_column(Float)
    top_p: Mapped[float | None] = mapped_column(Float)
    response_format: Mapped[Any] = mapped_column(JSONType, nullable=True)
    reasoning_effort: Mapped[str | None] = mapped_column(String(20))
