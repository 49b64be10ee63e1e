"""The Uploads API's requests, checked before upstream sees them, and what ownership records of
upstream's answers. Requests are forwarded as sent; unknown fields are upstream's to judge."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from app.files.schemas import UPLOAD_PURPOSES, UpstreamFile


class UploadCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    filename: str = Field(min_length=1, max_length=1024)
    purpose: str
    bytes: StrictInt = Field(ge=0)
    mime_type: str = Field(min_length=1, max_length=255)
    expires_after: dict[str, Any] | None = None

    @field_validator("purpose")
    @classmethod
    def _known_purpose(cls, value: str) -> str:
        if value not in UPLOAD_PURPOSES:
            raise ValueError(f"must be one of {sorted(UPLOAD_PURPOSES)}")
        return value


class UploadComplete(BaseModel):
    model_config = ConfigDict(extra="allow")

    part_ids: list[str] = Field(max_length=10_000)
    md5: str | None = None


class UpstreamUpload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=100)
    filename: str
    purpose: str = Field(max_length=40)
    bytes: int = Field(ge=0)
    status: str = Field(max_length=20)
    expires_at: int | None = None
    file: UpstreamFile | None = None
