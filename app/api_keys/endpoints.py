from __future__ import annotations

from fastapi import APIRouter, Request

from app.api_keys import service
from app.api_keys.dependencies import AdminPrincipal, CurrentPrincipal
from app.api_keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated, Me
from app.audit.schemas import Actor
from app.budgets.schemas import Budget
from app.db import DB_ERRORS, SessionDep
from app.errors import ServiceUnavailable
from app.kit.db_types import utcnow
from app.kit.schemas import ListResponse

router = APIRouter(prefix="/admin/keys", tags=["admin: keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
async def create_key(data: ApiKeyCreate, request: Request, session: SessionDep, admin: AdminPrincipal) -> ApiKeyCreated:
    key, token = await service.create_key(session, request.app.state.key_secret, data, Actor.of(admin))
    return ApiKeyCreated(**ApiKey.model_validate(key).model_dump(), key=token)


@router.get("", response_model=ListResponse[ApiKey])
async def list_keys(session: SessionDep, _: AdminPrincipal, user: str | None = None) -> ListResponse[ApiKey]:
    keys = await service.list_keys(session, user)
    return ListResponse(data=[ApiKey.model_validate(k) for k in keys])


@router.get("/{key_id}", response_model=ApiKey)
async def get_key(key_id: str, session: SessionDep, _: AdminPrincipal) -> ApiKey:
    return ApiKey.model_validate(await service.get_key(session, key_id))


@router.post("/{key_id}/revoke", response_model=ApiKey)
async def revoke_key(key_id: str, request: Request, session: SessionDep, admin: AdminPrincipal) -> ApiKey:
    key = await service.revoke_key(session, key_id, Actor.of(admin))
    request.app.state.authenticator.invalidate()
    return ApiKey.model_validate(key)


me_router = APIRouter(prefix="/v1", tags=["tollgate"])


@me_router.get("/me", response_model=Me)
async def me(principal: CurrentPrincipal, request: Request) -> Me:
    try:
        budgets = await request.app.state.spend.budgets_of(principal)
    except DB_ERRORS as exc:
        raise ServiceUnavailable("Tollgate cannot read your budgets right now. Retry shortly.") from exc
    now = utcnow()
    return Me.of(principal, [Budget.of(b, now) for b in budgets])
