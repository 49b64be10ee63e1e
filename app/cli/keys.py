from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from app.api_keys import service
from app.api_keys.schemas import ApiKey, ApiKeyCreate, ApiKeyCreated
from app.audit.schemas import CLI
from app.cli.runtime import emit, load_settings, run_in_session

keys = typer.Typer(help="Issue, list and revoke API keys.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
KEY_COLUMNS = ["id", "display_prefix", "user_id", "name", "allowed_models", "expires_at", "revoked_at"]


@keys.command("create")
def create_key(
    user: Annotated[str, typer.Option(help="User id or name.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    models: Annotated[str | None, typer.Option(help="Comma-separated models the key may call.")] = None,
    expires: Annotated[str | None, typer.Option(help="'30d', '12h', '2w' or an ISO timestamp.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Issue a key. The secret is printed once and cannot be shown again."""
    try:
        data = ApiKeyCreate(
            user=user,
            name=name,
            models=models.split(",") if models is not None else None,
            expires_at=service.parse_expiry(expires) if expires else None,
        )
    except (ValidationError, ValueError) as exc:
        typer.secho(f"Error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    secret = service.resolve_key_secret(load_settings())
    key, token = run_in_session(lambda s: service.create_key(s, secret, data, CLI))
    created = ApiKeyCreated(**ApiKey.model_validate(key).model_dump(), key=token)
    if as_json:
        emit(created, True, [])
        return
    emit(created, False, KEY_COLUMNS)
    typer.echo(f"\nkey: {token}\nStore it now: Tollgate keeps only a digest and cannot show it again.")


@keys.command("list")
def list_keys(
    user: Annotated[str | None, typer.Option(help="Only this user's keys.")] = None, as_json: JsonFlag = False
) -> None:
    """List keys (never their secrets)."""
    found = run_in_session(lambda s: service.list_keys(s, user))
    emit([ApiKey.model_validate(k) for k in found], as_json, KEY_COLUMNS)


@keys.command("revoke")
def revoke_key(key_id: str, as_json: JsonFlag = False) -> None:
    """Revoke a key. Every replica refuses it within the auth cache TTL (at most 2 seconds)."""
    key = run_in_session(lambda s: service.revoke_key(s, key_id, CLI))
    emit(ApiKey.model_validate(key), as_json, KEY_COLUMNS)
