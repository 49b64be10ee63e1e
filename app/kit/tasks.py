"""Periodic background work owned by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("tollgate.tasks")


async def every(interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
    """Runs ``job`` every ``interval_s`` until cancelled. A failing run is logged and retried
    next time: the database being away for a while must not kill the loop."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("periodic job %s failed: %s", getattr(job, "__name__", job), type(exc).__name__)
