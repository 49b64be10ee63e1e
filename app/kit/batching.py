"""Group commit: writes queued by many requests go to the database together.

``submit`` only queues, so a request never waits for its write. One drain task flushes what is
queued, ``linger_s`` after the first item arrived; while a flush runs, new items queue and the
next flush takes all of them. One round trip and one commit then serve a whole batch: at a few
hundred requests per second, a round trip costs the client more CPU than the rest of the write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("tollgate.batching")


class GroupCommit(Generic[T]):
    def __init__(
        self, flush: Callable[[list[T]], Awaitable[None]], *, linger_s: float = 0.0, max_batch: int = 256
    ) -> None:
        """``flush`` must handle its own expected failures; anything it raises is logged and the
        batch is dropped, so one bad batch cannot stop the ones after it."""
        self._flush = flush
        self._linger_s = linger_s
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
                if self._linger_s and len(self._queue) < self._max_batch:
                    await asyncio.sleep(self._linger_s)
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                self.flushes += 1
                try:
                    await self._flush(batch)
                except Exception:
                    log.exception("dropped a batch of %d writes", len(batch))
        finally:
            self._task = None


class BatchCall(Generic[T, R]):
    """Concurrent calls that share one round trip: while a batch is in flight, new items queue,
    and the next batch takes them all. No timer: a lone call goes out at once.

    ``call`` returns one result per item, in order. If a caller stops waiting (cancelled) after
    its item was sent, ``on_orphan`` gets the item and its result, so whatever the call did can
    be undone.
    """

    def __init__(
        self,
        call: Callable[[list[T]], Awaitable[list[R]]],
        *,
        on_orphan: Callable[[T, R], None] | None = None,
        max_batch: int = 128,
    ) -> None:
        self._call = call
        self._on_orphan = on_orphan
        self._max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="batch-call")
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                self.batches += 1
                await self._run([item for item, _ in batch], [future for _, future in batch])
        finally:
            self._task = None

    async def _run(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        try:
            results = await self._call(items)
        except asyncio.CancelledError:
            for future in futures + [f for _, f in self._queue]:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for item, future, result in zip(items, futures, results, strict=True):
            if not future.done():
                future.set_result(result)
            elif self._on_orphan is not None:
                self._on_orphan(item, result)
