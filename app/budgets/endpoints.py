from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api_keys.dependencies import AdminPrincipal
from app.audit.schemas import Actor
from app.budgets import service
from app.budgets.schemas import Budget, BudgetCreate, BudgetUpdate, Scope
from app.db import SessionDep
from app.kit.db_types import utcnow
from app.kit.schemas import ListResponse
from app.spend.dependencies import Settled

router = APIRouter(prefix="/admin/budgets", tags=["admin: budgets"])


@router.post("", status_code=201, response_model=Budget)
async def create_budget(data: BudgetCreate, request: Request, session: SessionDep, admin: AdminPrincipal) -> Budget:
    default_timezone = request.app.state.settings.spend.budget_timezone
    budget = await service.create_budget(session, data, default_timezone, Actor.of(admin))
    return Budget.of(budget, utcnow())


@router.get("", response_model=ListResponse[Budget])
async def list_budgets(
    session: SessionDep,
    _: AdminPrincipal,
    __: Settled,
    scope: Scope | None = None,
    scope_id: str | None = None,
) -> ListResponse[Budget]:
    now = utcnow()
    return ListResponse(data=[Budget.of(b, now) for b in await service.list_budgets(session, scope, scope_id)])


@router.get("/{budget_id}", response_model=Budget)
async def get_budget(budget_id: str, session: SessionDep, _: AdminPrincipal, __: Settled) -> Budget:
    return Budget.of(await service.get_budget(session, budget_id), utcnow())


@router.patch("/{budget_id}", response_model=Budget)
async def update_budget(budget_id: str, data: BudgetUpdate, session: SessionDep, admin: AdminPrincipal) -> Budget:
    return Budget.of(await service.update_budget(session, budget_id, data, Actor.of(admin)), utcnow())


@router.delete("/{budget_id}", status_code=204)
async def delete_budget(budget_id: str, session: SessionDep, admin: AdminPrincipal) -> Response:
    await service.delete_budget(session, budget_id, Actor.of(admin))
    return Response(status_code=204)
