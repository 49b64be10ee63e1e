from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.kit.db_types import JSONType, UTCDateTime
from app.models.base import Base, TimestampMixin

# A run in one of these states holds its thread: no other run, and no chat into the thread.
UNFINISHED_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")


class ThreadRun(TimestampMixin, Base):
    """One execution of a thread with an assistant, through upstream chat completions."""

    __tablename__ = "thread_runs"
    __table_args__ = (Index("ix_thread_runs_thread_id_created_at", "thread_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(40), ForeignKey("threads.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[str] = mapped_column(String(40), nullable=False)
    assistant_id: Mapped[str] = mapped_column(String(40), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    instructions: Mapped[str | None] = mapped_column(Text)
    tools: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    meta: Mapped[dict[str, str]] = mapped_column("metadata", JSONType, nullable=False, default=dict)
    temperature: Mapped[float | None] = mapped_column(Float)
    top_p: Mapped[float | None] = mapped_column(Float)
    response_format: Mapped[Any] = mapped_column(JSONType, nullable=True)
    tool_choice: Mapped[Any] = mapped_column(JSONType, nullable=True)
    parallel_tool_calls: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    max_prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    max_completion_tokens: Mapped[int | None] = mapped_column(Integer)
    truncation_strategy: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The chat messages the run itself added (assistant tool calls, tool outputs), in order.
    steps: Mapped[list[Any]] = mapped_column(JSONType, nullable=False, default=list)
    required_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    usage: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    incomplete_details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
