"""OpenAI's file object, and what Tollgate needs from upstream's answers to own one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import UpstreamError
from app.models import File as FileModel

# What a client may upload (OpenAI's FilePurpose); the *_output purposes are upstream's own.
T = TypeVar("T", bound=BaseModel)

UPLOAD_PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    status: str
    status_details: str | None = None

    @classmethod
    def of(cls, row: FileModel) -> FileObject:
        return cls(
            id=row.id,
            bytes=row.bytes,
            created_at=row.upstream_created_at,
            expires_at=int(row.expires_at.timestamp()) if row.expires_at else None,
            filename=row.filename,
            purpose=row.purpose,
            status=row.status,
        )


class UpstreamFile(BaseModel):
    """The fields of upstream's file object that ownership records; others pass through."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=100)
    bytes: int = Field(ge=0)
    created_at: int
    filename: str
    purpose: str = Field(max_length=40)
    status: str = Field(default="processed", max_length=20)
    expires_at: int | None = None

    @property
    def expires(self) -> datetime | None:
        return datetime.fromtimestamp(self.expires_at, UTC) if self.expires_at is not None else None


def parse_upstream(model: type[T], content: bytes) -> T:
    """Upstream's answer as ``model``; a malformed one is upstream's failure (502), not the client's."""
    try:
        return model.model_validate(json.loads(content))
    except (ValueError, ValidationError):
        raise UpstreamError("The upstream API returned a malformed response.") from None
