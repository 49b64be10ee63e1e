from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import typer
from pydantic import ValidationError

from app.audit.schemas import CLI
from app.budgets import service as budgets
from app.budgets.schemas import Budget, BudgetCreate, BudgetUpdate
from app.cli.runtime import emit, load_settings, run_in_session
from app.kit.db_types import utcnow
from app.ratelimits import service as limits
from app.ratelimits.schemas import RateLimit, RateLimitSet

budgets_cli = typer.Typer(help="Spend limits on keys, users and teams.", no_args_is_help=True)
limits_cli = typer.Typer(help="Request, token and concurrency limits.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
Key = Annotated[str | None, typer.Option("--key", help="Key id.")]
User = Annotated[str | None, typer.Option("--user", help="User id or name.")]
Team = Annotated[str | None, typer.Option("--team", help="Team id or name.")]
BUDGET_COLUMNS = ["id", "scope", "scope_id", "period", "limit_usd", "spent_usd", "reserved_usd", "remaining_usd"]
LIMIT_COLUMNS = ["id", "scope", "scope_id", "rpm", "tpm", "concurrent"]


def _scope(key: str | None, user: str | None, team: str | None) -> tuple[str, str]:
    given = [(scope, ref) for scope, ref in (("key", key), ("user", user), ("team", team)) if ref]
    if len(given) != 1:
        typer.secho("Error: give exactly one of --key, --user, --team", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return given[0]


def _invalid(exc: ValidationError) -> typer.Exit:
    typer.secho(f"Error: {exc.errors()[0]['msg']}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


@budgets_cli.command("create")
def create_budget(
    limit: Annotated[Decimal, typer.Option(help="Limit in dollars, e.g. 50 or 12.5.")],
    period: Annotated[str, typer.Option(help="daily, weekly, monthly or lifetime.")] = "monthly",
    soft: Annotated[Decimal | None, typer.Option(help="Warning threshold in dollars.")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone for period boundaries.")] = None,
    key: Key = None,
    user: User = None,
    team: Team = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a budget on one key, user or team."""
    scope, ref = _scope(key, user, team)
    try:
        data = BudgetCreate.model_validate(
            {
                "scope": scope,
                "scope_id": ref,
                "period": period,
                "limit_usd": limit,
                "soft_limit_usd": soft,
                "timezone": timezone,
            }
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    default_tz = load_settings().spend.budget_timezone
    budget = run_in_session(lambda s: budgets.create_budget(s, data, default_tz, CLI))
    emit(Budget.of(budget, utcnow()), as_json, BUDGET_COLUMNS)


@budgets_cli.command("list")
def list_budgets(key: Key = None, user: User = None, team: Team = None, as_json: JsonFlag = False) -> None:
    """List budgets with what is spent, reserved and left."""
    scope, ref = _scope(key, user, team) if (key or user or team) else (None, None)
    found = run_in_session(lambda s: budgets.list_budgets(s, scope, ref))
    now = utcnow()
    emit([Budget.of(b, now) for b in found], as_json, BUDGET_COLUMNS)


@budgets_cli.command("update")
def update_budget(
    budget_id: str,
    limit: Annotated[Decimal | None, typer.Option(help="New limit in dollars.")] = None,
    soft: Annotated[Decimal | None, typer.Option(help="New warning threshold in dollars.")] = None,
    period: Annotated[str | None, typer.Option(help="New period.")] = None,
    timezone: Annotated[str | None, typer.Option(help="New time zone.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change a budget in place; keys keep working and are not reissued."""
    given = {"limit_usd": limit, "soft_limit_usd": soft, "period": period, "timezone": timezone}
    try:
        data = BudgetUpdate.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise _invalid(exc) from exc
    budget = run_in_session(lambda s: budgets.update_budget(s, budget_id, data, CLI))
    emit(Budget.of(budget, utcnow()), as_json, BUDGET_COLUMNS)


@budgets_cli.command("delete")
def delete_budget(budget_id: str) -> None:
    """Remove a budget."""
    run_in_session(lambda s: budgets.delete_budget(s, budget_id, CLI))
    typer.echo(f"deleted {budget_id}")


@limits_cli.command("set")
def set_limits(
    rpm: Annotated[int | None, typer.Option(help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute.")] = None,
    concurrent: Annotated[int | None, typer.Option(help="Requests in flight at once.")] = None,
    key: Key = None,
    user: User = None,
    team: Team = None,
    as_json: JsonFlag = False,
) -> None:
    """Set (replace) the rate limits of one key, user or team."""
    scope, ref = _scope(key, user, team)
    try:
        data = RateLimitSet.model_validate(
            {"scope": scope, "scope_id": ref, "rpm": rpm, "tpm": tpm, "concurrent": concurrent}
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    row = run_in_session(lambda s: limits.set_limits(s, data, CLI))
    emit(RateLimit.model_validate(row), as_json, LIMIT_COLUMNS)


@limits_cli.command("list")
def list_limits(as_json: JsonFlag = False) -> None:
    """List rate limits."""
    rows = run_in_session(lambda s: limits.list_limits(s))
    emit([RateLimit.model_validate(r) for r in rows], as_json, LIMIT_COLUMNS)


@limits_cli.command("delete")
def delete_limits(limit_id: str) -> None:
    """Remove a rate limit."""
    run_in_session(lambda s: limits.delete_limits(s, limit_id, CLI))
    typer.echo(f"deleted {limit_id}")
