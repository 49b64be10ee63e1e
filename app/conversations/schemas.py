from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.kit.schemas import Metadata
from app.models import Conversation as ConversationRow


class _Body(BaseModel):
    # Unknown fields are OpenAI's to judge: the body goes upstream as sent.
    model_config = ConfigDict(extra="allow")


class ConversationCreate(_Body):
    metadata: Metadata | None = None
    items: list[dict[str, Any]] | None = Field(default=None, max_length=20)


class ConversationUpdate(_Body):
    metadata: Metadata


class ItemsCreate(_Body):
    items: list[dict[str, Any]] = Field(min_length=1, max_length=20)


class Conversation(BaseModel):
    """OpenAI's conversation object, as Tollgate lists it."""

    id: str
    object: Literal["conversation"] = "conversation"
    created_at: int
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: ConversationRow) -> Conversation:
        return cls(id=row.id, created_at=row.upstream_created_at, metadata=row.meta)
