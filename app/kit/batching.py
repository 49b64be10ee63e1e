"""Group commit: writes queued by many requests go to the database together.

``submit`` only queues, so a request never waits for its write. One drain task flushes what is
queued; while a flush runs, new items queue and the next flush takes all of them. A lone item
is flushed at once (no timer), and under load one round trip and one commit serve a batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("tollgate.batching")


class GroupCommit(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], max_batch: int = 256) -> None:
        """``flush`` must handle its own expected failures; anything it raises is logged and the
        batch is dropped, so one bad batch cannot stop the ones after it."""
        self._flush = flush
        self._max_batch = max_batch
        self._queue: list[T] = []
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing being written."""
        return self._task is None

    def submit(self, item: T) -> None:
        self._queue.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="group-commit")

    async def wait_idle(self) -> None:
        """Returns once everything submitted so far is written (read-your-writes for this process)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                self.flushes += 1
                try:
                    await self._flush(batch)
                except Exception:
                    log.exception("dropped a batch of %d writes", len(batch))
        finally:
            self._task = None
