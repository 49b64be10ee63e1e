"""Budgets and principals that exist only in one test, for the spend service tests."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.kit.crypto import new_id
from app.kit.periods import EPOCH
from app.models import Budget


def new_principal() -> Principal:
    return Principal(new_id("key"), "", new_id("user"), "u", None, "member", None, None)


async def principal_with_budget(
    sessionmaker: async_sessionmaker[AsyncSession], limit_micros: int = 1_000_000
) -> tuple[Principal, str]:
    """A key-scoped lifetime budget ($1 unless told otherwise) for a fresh principal."""
    principal = new_principal()
    budget = Budget(
        id=new_id("budget"),
        scope="key",
        scope_id=principal.key_id,
        period="lifetime",
        timezone="UTC",
        limit_micros=limit_micros,
        spent_micros=0,
        reserved_micros=0,
        period_start=EPOCH,
    )
    async with sessionmaker.begin() as session:
        session.add(budget)
    return principal, budget.id


async def load_budget(sessionmaker: async_sessionmaker[AsyncSession], budget_id: str) -> Budget:
    async with sessionmaker() as session:
        budget = await session.get(Budget, budget_id)
        assert budget is not None
        return budget
