from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from app.audit import service
from app.audit.schemas import AuditEvent, AuditFilter
from app.cli.runtime import emit, run_in_session
from app.kit.pagination import PageParams

audit_cli = typer.Typer(help="Read the audit trail of admin actions.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
COLUMNS = ["id", "created_at", "action", "source", "actor_user_id", "target_type", "target_id", "owner_id"]


@audit_cli.command("list")
def list_events(
    action: Annotated[str | None, typer.Option(help="An action, or a family: 'budget.*'.")] = None,
    actor: Annotated[str | None, typer.Option(help="Acting user (id or name) or key id.")] = None,
    owner: Annotated[str | None, typer.Option(help="User the target belongs to (id or name).")] = None,
    target_type: Annotated[str | None, typer.Option(help="e.g. file, budget, api_key.")] = None,
    target_id: Annotated[str | None, typer.Option()] = None,
    since: Annotated[str | None, typer.Option(help="ISO-8601 timestamp, e.g. 2026-12-01T00:00:00Z.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    after: Annotated[str | None, typer.Option(help="Page on from this event id (older events).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List events, newest first."""
    found = AuditFilter(
        since=_utc(since), action=action, actor=actor, owner=owner, target_type=target_type, target_id=target_id
    )
    rows, _ = run_in_session(lambda s: service.page(s, found, PageParams(limit=limit, order="desc", after=after)))
    emit([AuditEvent.model_validate(r) for r in rows], as_json, COLUMNS)


def _utc(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp; one without an offset is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        typer.secho(f"Error: --since: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
