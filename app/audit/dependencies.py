from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query

from app.api_keys.dependencies import CurrentPrincipal
from app.audit import support
from app.audit.schemas import AuditFilter
from app.db import SessionDep
from app.kit.pagination import PageParams

UserQuery = Annotated[
    str | None,
    Query(description="Admin keys only: list this user's objects (id or name) instead of your own; audited"),
]


async def audit_filter(
    since: Annotated[datetime | None, Query(description="Events at or after this time")] = None,
    until: Annotated[datetime | None, Query(description="Events before this time")] = None,
    action: Annotated[str | None, Query(max_length=40, description="An action, or a family: 'budget.*'")] = None,
    actor: Annotated[str | None, Query(max_length=200, description="The acting user (id or name) or key id")] = None,
    target_type: Annotated[str | None, Query(max_length=40)] = None,
    target_id: Annotated[str | None, Query(max_length=200)] = None,
    owner: Annotated[str | None, Query(max_length=200, description="The user the target belongs to")] = None,
) -> AuditFilter:
    return AuditFilter(since, until, action, actor, target_type, target_id, owner)


async def audit_page(
    limit: Annotated[int, Query(ge=1, le=100)] = 20, after: str | None = None, before: str | None = None
) -> PageParams:
    """Always newest first: a trail is read back from now."""
    return PageParams(limit=limit, order="desc", after=after, before=before)


def listed_owner(kind: str) -> Any:
    """The dependency a list route takes for whose objects it lists (see ``support.list_owner``)."""

    async def dependency(principal: CurrentPrincipal, session: SessionDep, user: UserQuery = None) -> str:
        return await support.list_owner(session, principal, kind, user)

    return Depends(dependency)


Filter = Annotated[AuditFilter, Depends(audit_filter)]
AuditPage = Annotated[PageParams, Depends(audit_page)]
