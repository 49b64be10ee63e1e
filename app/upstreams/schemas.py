"""Admin view of the upstreams: configured ones and those admins changed at run time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

from app.kit.schemas import Schema


class UpstreamPut(Schema):
    base_url: str = Field(pattern=r"^https?://", max_length=500)
    # Kept as it is when omitted on a change; a new upstream without one sends no key (vLLM).
    api_key: SecretStr | None = Field(default=None, max_length=500)
    weight: int = Field(default=1, ge=0, le=1000)
    models: list[str] = Field(default_factory=list, max_length=1000)
    enabled: bool = True


class Upstream(BaseModel):
    name: str
    base_url: str
    weight: int
    models: list[str]
    enabled: bool
    source: Literal["settings", "admin"]
    # Enough to tell keys apart; never the key.
    api_key_hint: str | None
