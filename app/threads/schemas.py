"""Threads and their messages, shaped as OpenAI's spec has them so typed SDK parsing works."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.kit.schemas import Metadata
from app.models import Thread as ThreadModel
from app.models import ThreadMessage


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]
    attachments: list[dict[str, Any]] | None = None
    metadata: Metadata | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | list[dict[str, Any]]) -> str | list[dict[str, Any]]:
        if isinstance(value, list):
            if not value:
                raise ValueError("content must not be empty")
            for part in value:
                kind = part.get("type")
                if kind == "image_file":
                    raise ValueError("image_file parts need OpenAI-hosted files; send image_url parts instead")
                if kind not in ("text", "image_url"):
                    raise ValueError(f"unknown content part type {kind!r}")
                if kind == "text" and not isinstance(part.get("text"), str):
                    raise ValueError("a text part needs a string 'text'")
        return value

    def stored_content(self) -> list[dict[str, Any]]:
        """OpenAI's output shape: text parts become {"value", "annotations"}."""
        parts = [{"type": "text", "text": self.content}] if isinstance(self.content, str) else self.content
        return [
            {"type": "text", "text": {"value": p["text"], "annotations": []}} if p["type"] == "text" else p
            for p in parts
        ]


def chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Stored (output-shaped) parts back to chat input: plain text stays a string."""
    if all(p.get("type") == "text" for p in parts):
        return "\n".join(p["text"]["value"] for p in parts)
    return [{"type": "text", "text": p["text"]["value"]} if p.get("type") == "text" else p for p in parts]


class MessageUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: Metadata | None = None


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[MessageCreate] = Field(default_factory=list, max_length=32)
    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None


class ThreadUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_resources: dict[str, Any] | None = None
    metadata: Metadata | None = None


class Thread(BaseModel):
    id: str
    object: Literal["thread"] = "thread"
    created_at: int
    tool_resources: dict[str, Any] | None
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: ThreadModel) -> Thread:
        return cls(
            id=row.id, created_at=int(row.created_at.timestamp()), tool_resources=row.tool_resources, metadata=row.meta
        )


class Message(BaseModel):
    id: str
    object: Literal["thread.message"] = "thread.message"
    created_at: int
    thread_id: str
    status: str
    incomplete_details: dict[str, Any] | None
    completed_at: int | None
    incomplete_at: int | None
    role: str
    content: list[dict[str, Any]]
    assistant_id: str | None
    run_id: str | None
    attachments: list[dict[str, Any]] | None
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: ThreadMessage) -> Message:
        return cls(
            id=row.id,
            created_at=int(row.created_at.timestamp()),
            thread_id=row.thread_id,
            status=row.status,
            incomplete_details=row.incomplete_details,
            completed_at=int(row.completed_at.timestamp()) if row.completed_at else None,
            incomplete_at=int(row.incomplete_at.timestamp()) if row.incomplete_at else None,
            role=row.role,
            content=row.content,
            assistant_id=row.assistant_id,
            run_id=row.run_id,
            attachments=row.attachments,
            metadata=row.meta,
        )
