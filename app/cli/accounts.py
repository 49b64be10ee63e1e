from __future__ import annotations

from typing import Annotated

import typer

from app.accounts import service
from app.accounts.schemas import Team, TeamCreate, User, UserCreate
from app.audit.schemas import CLI
from app.cli.runtime import emit, run_in_session

teams = typer.Typer(help="Manage teams.", no_args_is_help=True)
users = typer.Typer(help="Manage users.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
TEAM_COLUMNS = ["id", "name", "created_at"]
USER_COLUMNS = ["id", "name", "role", "team_id", "created_at"]


@teams.command("create")
def create_team(name: str, as_json: JsonFlag = False) -> None:
    """Create a team."""
    team = run_in_session(lambda s: service.create_team(s, TeamCreate(name=name), CLI))
    emit(Team.model_validate(team), as_json, TEAM_COLUMNS)


@teams.command("list")
def list_teams(as_json: JsonFlag = False) -> None:
    """List teams."""
    found = run_in_session(service.list_teams)
    emit([Team.model_validate(t) for t in found], as_json, TEAM_COLUMNS)


@users.command("create")
def create_user(
    name: str,
    team: Annotated[str | None, typer.Option(help="Team id or name.")] = None,
    role: Annotated[str, typer.Option(help="admin or member.")] = "member",
    as_json: JsonFlag = False,
) -> None:
    """Create a user."""
    data = UserCreate.model_validate({"name": name, "team": team, "role": role})
    user = run_in_session(lambda s: service.create_user(s, data, CLI))
    emit(User.model_validate(user), as_json, USER_COLUMNS)


@users.command("list")
def list_users(
    team: Annotated[str | None, typer.Option(help="Only this team's users.")] = None, as_json: JsonFlag = False
) -> None:
    """List users."""
    found = run_in_session(lambda s: service.list_users(s, team))
    emit([User.model_validate(u) for u in found], as_json, USER_COLUMNS)
