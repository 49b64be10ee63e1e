"""Engine and session plumbing. Nothing here runs at import: the lifespan builds the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import event, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from app.config import DatabaseSettings

# What "the database is unreachable" looks like from here: driver, pool and socket failures
# (asyncpg's own errors too, for the calls made on the raw driver connection).
DB_ERRORS = (
    SQLAlchemyError,
    OSError,
    TimeoutError,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    # What asyncpg raises when a connection's server process died while it was being used
    # ("cannot switch to state ..."): the database went away, not a bug of the caller.
    asyncpg.exceptions.InternalClientError,
)


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    if settings.is_sqlite:
        return _create_sqlite_engine(settings)
    return create_async_engine(
        settings.url,
        echo=settings.echo,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_s,
        pool_pre_ping=True,
    )


class _NoResetConnection(asyncpg.Connection):
    """The money pool's connections run single autocommit calls and never change session state,
    so the pool's reset (a round trip on every release) has nothing to undo."""

    def get_reset_query(self) -> str:
        return ""


async def create_money_pool(settings: DatabaseSettings) -> asyncpg.Pool:
    """The asyncpg pool for the reservation and settlement calls (PostgreSQL only)."""
    dsn = make_url(settings.url).set(drivername="postgresql").render_as_string(hide_password=False)
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=settings.pool_size,
        connection_class=_NoResetConnection,
        # Enforced by the server, which costs the client nothing per call: a money call stuck
        # this long (behind a lock, say) fails closed, with a 503 or a lease left for the reaper.
        server_settings={
            "statement_timeout": str(int(settings.statement_timeout_s * 1000)),
            # The money functions' statements have the same shape on every call, yet PL/pgSQL's
            # plan cache kept choosing a fresh custom plan for them: about 150 µs of planning
            # per reservation, a third of its database CPU. Their generic plans look rows up by
            # index (tests/spend/test_money_plans.py reads them).
            "plan_cache_mode": "force_generic_plan",
        },
        max_inactive_connection_lifetime=60,
    )
    return pool


def _create_sqlite_engine(settings: DatabaseSettings) -> AsyncEngine:
    kwargs: dict[str, Any] = {"echo": settings.echo}
    if ":memory:" in settings.url:
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    engine = create_async_engine(settings.url, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        # WAL lets readers run while the ledger is written; busy_timeout makes writers queue
        # instead of failing with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed once after the handler returns, rolled back on error.

    Registered with ``scope="function"`` so the commit happens before the response is sent: a
    client that saw 200 can rely on what it created being there.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
