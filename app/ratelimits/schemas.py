from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator

from app.kit.schemas import ReadSchema, Schema

Scope = Literal["key", "user", "team"]


class RateLimitSet(Schema):
    """Creates or replaces the limits of one key, user or team; null means no limit of that kind."""

    scope: Scope
    scope_id: str = Field(min_length=1, max_length=200, description="Key id, or user/team id or name")
    rpm: int | None = Field(default=None, ge=1, le=10_000_000)
    tpm: int | None = Field(default=None, ge=1, le=10_000_000_000)
    concurrent: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _something(self) -> RateLimitSet:
        if self.rpm is None and self.tpm is None and self.concurrent is None:
            raise ValueError("set at least one of rpm, tpm, concurrent")
        return self


class RateLimit(ReadSchema):
    object: Literal["rate_limit"] = "rate_limit"
    id: str
    scope: str
    scope_id: str
    rpm: int | None
    tpm: int | None
    concurrent: int | None
    created_at: datetime
