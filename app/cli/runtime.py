"""What the CLI commands share: settings, migrations, and a one-shot database session."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.errors import GatewayError

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")
# A checkout (pip install -e .) keeps migrations beside the package; an image installs the
# package into a venv and ships alembic.ini and migrations/ in its working directory.
_ROOTS = (Path(__file__).resolve().parents[2], Path.cwd())


def alembic_config(url: str) -> Config:
    # Imported here: a worker never migrates, and alembic's modules are 8 MB of its memory.
    from alembic.config import Config

    root = next((r for r in _ROOTS if (r / "alembic.ini").is_file()), _ROOTS[0])
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "migrations"))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def migrate(settings: Settings) -> None:
    if settings.database.is_sqlite:
        _ensure_sqlite_dir(settings.database.url)
    from alembic import command

    command.upgrade(alembic_config(settings.database.url), "head")


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and ":memory:" not in path:
        Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


def load_settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:
        typer.secho(f"Configuration error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc


def run_in_session(fn: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Runs ``fn`` in one transaction and commits it; domain errors become a clean exit 1."""

    async def main() -> T:
        engine = create_engine(load_settings().database)
        try:
            async with create_sessionmaker(engine).begin() as session:
                return await fn(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except GatewayError as exc:
        typer.secho(f"Error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def emit(items: BaseModel | list[Any], as_json: bool, columns: list[str]) -> None:
    rows = [items] if isinstance(items, BaseModel) else items
    dumped = [r.model_dump(mode="json") for r in rows]
    if as_json:
        typer.echo(json.dumps(dumped[0] if isinstance(items, BaseModel) else dumped, indent=2))
        return
    widths = [max([len(c), *(len(_cell(d.get(c))) for d in dumped)]) for c in columns]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for d in dumped:
        typer.echo("  ".join(_cell(d.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
