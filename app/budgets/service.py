"""Budget CRUD. Changing a limit takes effect on the next reservation; no key is reissued."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.service import resolve_scope_id, scope_owner
from app.audit import service as audit
from app.audit.schemas import Actor
from app.budgets.schemas import BudgetCreate, BudgetUpdate, micros_to_usd, usd_to_micros
from app.errors import Conflict, InvalidRequest, NotFound
from app.kit.crypto import new_id
from app.kit.db_types import utcnow
from app.kit.periods import period_bounds
from app.models import Budget
from app.spend.repository import BudgetRepository


async def create_budget(session: AsyncSession, data: BudgetCreate, default_timezone: str, actor: Actor) -> Budget:
    scope_id = await resolve_scope_id(session, data.scope, data.scope_id)
    repo = BudgetRepository(session)
    if await repo.find(data.scope, scope_id, data.period) is not None:
        raise Conflict(f"The {data.scope} already has a {data.period} budget; change it instead.", param="period")
    timezone = data.timezone or default_timezone
    budget = Budget(
        id=new_id("budget"),
        scope=data.scope,
        scope_id=scope_id,
        period=data.period,
        timezone=timezone,
        limit_micros=usd_to_micros(data.limit_usd),
        soft_limit_micros=usd_to_micros(data.soft_limit_usd) if data.soft_limit_usd is not None else None,
        spent_micros=0,
        reserved_micros=0,
        period_start=period_bounds(data.period, timezone, utcnow())[0],
    )
    await repo.create(budget)
    await _record(session, actor, "budget.created", budget, _terms(budget))
    return budget


async def get_budget(session: AsyncSession, budget_id: str) -> Budget:
    budget = await BudgetRepository(session).get_by_id(budget_id)
    if budget is None:
        raise NotFound(f"No budget '{budget_id}'.", param="budget_id", code="budget_not_found")
    return budget


async def list_budgets(session: AsyncSession, scope: str | None, scope_ref: str | None) -> Sequence[Budget]:
    scope_id = scope_ref
    if scope is not None and scope_ref is not None:
        scope_id = await resolve_scope_id(session, scope, scope_ref)
    return await BudgetRepository(session).list_budgets(scope, scope_id)


async def update_budget(session: AsyncSession, budget_id: str, data: BudgetUpdate, actor: Actor) -> Budget:
    """Limits change in place. Changing the period or time zone starts the new period's count
    from what is spent now, rather than guessing what part of it fell in the new window."""
    budget = await get_budget(session, budget_id)
    before = _terms(budget)
    fields = data.model_fields_set
    if "limit_usd" in fields:
        if data.limit_usd is None:
            raise InvalidRequest("limit_usd cannot be null; delete the budget instead.", param="limit_usd")
        budget.limit_micros = usd_to_micros(data.limit_usd)
    if "soft_limit_usd" in fields:
        budget.soft_limit_micros = usd_to_micros(data.soft_limit_usd) if data.soft_limit_usd is not None else None
    if budget.soft_limit_micros is not None and budget.soft_limit_micros > budget.limit_micros:
        raise InvalidRequest("soft_limit_usd must not exceed limit_usd.", param="soft_limit_usd")
    if data.period is not None or data.timezone is not None:
        now = utcnow()
        spent_is_current = budget.period_start >= period_bounds(budget.period, budget.timezone, now)[0]
        budget.period = data.period or budget.period
        budget.timezone = data.timezone or budget.timezone
        if spent_is_current:
            budget.period_start = period_bounds(budget.period, budget.timezone, now)[0]
    await session.flush()
    after = _terms(budget)
    changed = {k: {"from": before[k], "to": after[k]} for k in after if after[k] != before[k]}
    await _record(session, actor, "budget.updated", budget, {"changed": changed})
    return budget


async def delete_budget(session: AsyncSession, budget_id: str, actor: Actor) -> None:
    budget = await get_budget(session, budget_id)
    await _record(session, actor, "budget.deleted", budget, _terms(budget))
    await session.delete(budget)
    await session.flush()


def _terms(budget: Budget) -> dict[str, Any]:
    """What an admin sets on a budget, as the audit trail shows it (dollars, like the API)."""
    soft = budget.soft_limit_micros
    return {
        "scope": budget.scope,
        "scope_id": budget.scope_id,
        "period": budget.period,
        "timezone": budget.timezone,
        "limit_usd": micros_to_usd(budget.limit_micros),
        "soft_limit_usd": micros_to_usd(soft) if soft is not None else None,
    }


async def _record(session: AsyncSession, actor: Actor, action: str, budget: Budget, detail: dict[str, Any]) -> None:
    owner = await scope_owner(session, budget.scope, budget.scope_id)
    await audit.record(session, actor, action, "budget", budget.id, owner_id=owner, detail=detail)
