"""What a budget has left in its current period, and the refusal when a request does not fit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from app.errors import BudgetExceeded
from app.kit.periods import period_bounds
from app.metrics import service as metrics
from app.models import Budget


def headroom(budgets: Sequence[Budget], now: datetime) -> int:
    return min(remaining(b, now) for b in budgets)


def remaining(budget: Budget, now: datetime) -> int:
    start = period_bounds(budget.period, budget.timezone, now)[0]
    spent = budget.spent_micros if budget.period_start >= start else 0
    return max(budget.limit_micros - spent - budget.reserved_micros, 0)


def tightest(budgets: Sequence[Budget], now: datetime) -> Budget:
    return min(budgets, key=lambda b: remaining(b, now))


def exceeded(budget: Budget, now: datetime) -> BudgetExceeded:
    metrics.budget_refused(budget.scope)
    end = period_bounds(budget.period, budget.timezone, now)[1]
    resets = f"It resets at {end.isoformat()}." if end else "It is a lifetime budget and does not reset."
    headers = {"x-should-retry": "false", "x-tollgate-budget-id": budget.id}
    if end is not None:
        headers["x-tollgate-budget-resets-at"] = end.isoformat()
    return BudgetExceeded(
        f"This request would exceed the {budget.period} {budget.scope} budget ({budget.id}). {resets}",
        code=f"{budget.scope}_budget_exceeded",
        headers=headers,
    )
