from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import Field, field_validator

from app.budgets.schemas import Budget
from app.kit.db_types import utcnow
from app.kit.schemas import ReadSchema, Schema


class ApiKeyCreate(Schema):
    user: str = Field(min_length=1, max_length=200, description="User id or name")
    name: str = Field(default="", max_length=200)
    models: list[str] | None = Field(
        default=None, description="Models this key may call; omitted or null means all models"
    )
    expires_at: datetime | None = None

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return None
        cleaned = sorted({m.strip() for m in v if m.strip()})
        if not cleaned:
            raise ValueError("give at least one model, or omit the field to allow every model")
        return cleaned

    @field_validator("expires_at")
    @classmethod
    def _future(cls, v: datetime | None) -> datetime | None:
        if v is None:
            return None
        if v.tzinfo is None:
            raise ValueError("expires_at needs a time zone offset, e.g. 2026-12-31T00:00:00Z")
        if v <= utcnow():
            raise ValueError("expires_at must be in the future")
        return v


class ApiKey(ReadSchema):
    object: Literal["api_key"] = "api_key"
    id: str
    user_id: str
    name: str
    display_prefix: str
    allowed_models: list[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKey):
    key: str = Field(description="The secret key. It is shown this once and cannot be recovered.")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from a key once, then served from the auth cache."""

    key_id: str
    key_name: str
    user_id: str
    user_name: str
    team_id: str | None
    role: str
    allowed_models: frozenset[str] | None
    expires_at: datetime | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


class Me(ReadSchema):
    """``GET /v1/me``: who the caller is and what its key may use."""

    object: Literal["tollgate.me"] = "tollgate.me"
    user_id: str
    user_name: str
    team_id: str | None
    role: str
    key_id: str
    key_name: str
    allowed_models: list[str] | None
    expires_at: datetime | None
    budgets: list[Budget] = Field(description="Every budget this key's requests must fit")

    @classmethod
    def of(cls, p: Principal, budgets: list[Budget]) -> Me:
        models = sorted(p.allowed_models) if p.allowed_models is not None else None
        return cls(
            user_id=p.user_id,
            user_name=p.user_name,
            team_id=p.team_id,
            role=p.role,
            key_id=p.key_id,
            key_name=p.key_name,
            allowed_models=models,
            expires_at=p.expires_at,
            budgets=budgets,
        )
