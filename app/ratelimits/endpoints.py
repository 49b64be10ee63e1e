from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api_keys.dependencies import AdminPrincipal
from app.audit.schemas import Actor
from app.db import SessionDep
from app.kit.schemas import ListResponse
from app.ratelimits import service
from app.ratelimits.schemas import RateLimit, RateLimitSet, Scope

router = APIRouter(prefix="/admin/rate-limits", tags=["admin: rate limits"])


@router.put("", response_model=RateLimit)
async def set_limits(data: RateLimitSet, request: Request, session: SessionDep, admin: AdminPrincipal) -> RateLimit:
    row = await service.set_limits(session, data, Actor.of(admin))
    request.app.state.limits.invalidate()
    return RateLimit.model_validate(row)


@router.get("", response_model=ListResponse[RateLimit])
async def list_limits(session: SessionDep, _: AdminPrincipal, scope: Scope | None = None) -> ListResponse[RateLimit]:
    return ListResponse(data=[RateLimit.model_validate(r) for r in await service.list_limits(session, scope)])


@router.delete("/{limit_id}", status_code=204)
async def delete_limits(limit_id: str, request: Request, session: SessionDep, admin: AdminPrincipal) -> Response:
    await service.delete_limits(session, limit_id, Actor.of(admin))
    request.app.state.limits.invalidate()
    return Response(status_code=204)
