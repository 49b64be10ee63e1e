from __future__ import annotations

from typing import Annotated

import typer

from app.cli.runtime import emit, run_in_session
from app.fine_tuning import admin
from app.fine_tuning.schemas import GrantCreate

fine_tuned_cli = typer.Typer(help="Who may use which fine-tuned model.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
User = Annotated[str | None, typer.Option("--user", help="User id or name.")]
Team = Annotated[str | None, typer.Option("--team", help="Team id or name.")]
MODEL_COLUMNS = ["id", "owner", "base_model", "job_id", "users", "teams"]


def _scope(user: str | None, team: str | None) -> tuple[str, str]:
    if (user is None) == (team is None):
        typer.secho("Error: give exactly one of --user, --team", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    return ("user", user) if user is not None else ("team", team or "")


@fine_tuned_cli.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """Fine-tuned models made through Tollgate or granted, with their owners and grants."""
    emit(run_in_session(admin.list_models), as_json, MODEL_COLUMNS)


@fine_tuned_cli.command("grant")
def grant(model: str, user: User = None, team: Team = None, as_json: JsonFlag = False) -> None:
    """Let a user or a team call a fine-tuned model (running replicas see it within seconds)."""
    scope, ref = _scope(user, team)
    data = GrantCreate(scope="user" if scope == "user" else "team", scope_id=ref)
    emit(run_in_session(lambda s: admin.grant(s, None, model, data)), as_json, ["model", "scope", "scope_id"])


@fine_tuned_cli.command("revoke")
def revoke(model: str, user: User = None, team: Team = None) -> None:
    """Take a grant back."""
    scope, ref = _scope(user, team)
    run_in_session(lambda s: admin.revoke(s, None, model, scope, ref))
    typer.echo(f"revoked {model} from {scope} {ref}")
