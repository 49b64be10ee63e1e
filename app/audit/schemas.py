from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.api_keys.schemas import Principal
from app.kit.schemas import ReadSchema

Source = Literal["api", "cli", "system"]
# What an admin did with a tenant's object (support access); the admin API's own actions are
# named "<thing>.<verb>": user.created, key.revoked, budget.updated, upstream.changed, ...
ObjectAction = Literal["object.read", "object.updated", "object.deleted", "object.listed"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an admin key over the API, the operator's CLI, or Tollgate itself."""

    source: Source
    key_id: str | None = None
    user_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls("api", principal.key_id, principal.user_id)


CLI = Actor("cli")
SYSTEM = Actor("system")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    actor: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    owner: str | None = None


class AuditEvent(ReadSchema):
    object: Literal["audit_event"] = "audit_event"
    id: str
    created_at: datetime
    action: str
    source: str
    actor_key_id: str | None
    actor_user_id: str | None
    target_type: str
    target_id: str | None
    owner_id: str | None
    request_id: str | None
    detail: dict[str, Any]
