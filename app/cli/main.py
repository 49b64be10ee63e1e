from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Annotated

import typer
import uvicorn

from app.api_keys.service import ensure_admin, resolve_key_secret
from app.cli.accounts import teams, users
from app.cli.audit import audit_cli
from app.cli.budgets import budgets_cli, limits_cli
from app.cli.fine_tuned import fine_tuned_cli
from app.cli.keys import keys
from app.cli.runtime import load_settings, migrate
from app.cli.tokenizer import token_server
from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.kit.logging import configure_logging
from app.metrics.multiprocess import metrics_dir

cli = typer.Typer(help="Tollgate: a metered gateway in front of the OpenAI API.", no_args_is_help=True)
cli.add_typer(teams, name="teams")
cli.add_typer(users, name="users")
cli.add_typer(keys, name="keys")
cli.add_typer(budgets_cli, name="budgets")
cli.add_typer(limits_cli, name="limits")
cli.add_typer(audit_cli, name="audit")
cli.add_typer(fine_tuned_cli, name="fine-tuned")


@cli.command("migrate")
def migrate_command() -> None:
    """Apply database migrations (the same as `alembic upgrade head`)."""
    migrate(load_settings())
    typer.echo("database is up to date")


@cli.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [TOLLGATE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [TOLLGATE_PORT].")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes [TOLLGATE_WORKERS].")] = None,
    skip_migrations: Annotated[bool, typer.Option(help="Do not migrate before starting.")] = False,
) -> None:
    """Migrate, make sure an admin can log in, then serve."""
    settings = load_settings()
    configure_logging(settings.gateway.log_level, settings.gateway.log_json)
    if not skip_migrations:
        _migrate_apart()
    token = asyncio.run(_bootstrap(settings))
    if token is not None:
        typer.secho("\nBootstrap admin key (shown once, store it now):", fg=typer.colors.YELLOW, bold=True)
        typer.echo(f"  {token}\n")
    count = workers or settings.gateway.workers or _default_workers(settings)
    shared = settings.gateway.shared_tokenizer and not settings.gateway.tokenizer_socket
    # Set before the workers start: they pick file-backed metrics when they import prometheus-client.
    with metrics_dir(count), token_server(shared) as socket_path:
        if socket_path is not None:
            os.environ["TOLLGATE_TOKENIZER_SOCKET"] = socket_path
            # With one worker this process is the worker, and it has read its settings already.
            get_settings.cache_clear()
        uvicorn.run(
            "app.main:create_app_from_env",
            factory=True,
            host=host or settings.gateway.host,
            port=port or settings.gateway.port,
            workers=count,
            log_config=None,
            access_log=False,
            proxy_headers=False,
            # The fast event loop and HTTP parser (both from uvicorn[standard]), never a silent fallback.
            loop="uvloop",
            http="httptools",
        )


def _migrate_apart() -> None:
    """Alembic (8 MB of modules) stays out of this process, which is the worker when there is one."""
    done = subprocess.run([sys.executable, "-m", "app.cli.main", "migrate"], stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise typer.Exit(done.returncode)


def _default_workers(settings: Settings) -> int:
    if settings.database.is_sqlite or not settings.spend.redis_url:
        return 1
    return os.cpu_count() or 1


async def _bootstrap(settings: Settings) -> str | None:
    engine = create_engine(settings.database)
    try:
        async with create_sessionmaker(engine).begin() as session:
            admin_key = settings.keys.admin_key.get_secret_value() if settings.keys.admin_key else None
            return await ensure_admin(session, resolve_key_secret(settings), admin_key)
    finally:
        await engine.dispose()


@cli.command("mock-upstream")
def mock_upstream(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    latency_ms: Annotated[int, typer.Option(help="Delay before each response.")] = 0,
    chunk_delay_ms: Annotated[int, typer.Option(help="Delay between streamed chunks.")] = 0,
    api_key: Annotated[str | None, typer.Option(help="Require this bearer key.")] = None,
) -> None:
    """Run a fake OpenAI API: deterministic, free, for frontend work and tests."""
    from app.mock_upstream.server import MockConfig
    from app.mock_upstream.server import serve as serve_mock

    serve_mock(host, port, MockConfig(api_key=api_key, latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
