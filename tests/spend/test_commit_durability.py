"""Which money transactions wait for the WAL flush: reservations do, settle batches do not
(see migration 5e2b8c1d9a47 for why nothing can be under-billed by that)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


async def _commit_mode(conn: AsyncConnection) -> str:
    return str((await conn.execute(text("SHOW synchronous_commit"))).scalar_one())


async def test_a_settle_batch_commits_without_waiting_for_the_flush(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await _commit_mode(conn) == "on"
        await conn.commit()
        await conn.execute(text("SELECT tollgate_settle_batch('[]'::jsonb, now())"))
        assert await _commit_mode(conn) == "off"
        await conn.commit()
        # Only its own transaction: the connection's next one is synchronous again.
        assert await _commit_mode(conn) == "on"


async def test_a_reservation_still_waits_for_the_flush(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT * FROM tollgate_reserve_batch('[]'::jsonb, now(), 60)"))
        assert await _commit_mode(conn) == "on"
