"""A short-lived, per-process cache whose concurrent misses for one key share one load.

The hot path reads keys and rate limits on every request. When the entry of a busy key
expires, every request in flight misses at once; without sharing, each would take a database
connection to ask the same question (at 64 clients that was 64 queries a second per key, and
a stall of the event loop each time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl_s
        self._max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}
        self._pending: dict[K, asyncio.Task[V]] = {}

    async def get(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        """``load(key)`` runs only on a miss, once however many callers miss together."""
        hit = self._entries.get(key)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._load(key, load))
            self._pending[key] = task
            task.add_done_callback(lambda _: self._pending.pop(key, None))
        # Shielded: one waiter leaving (a client hanging up) must not cancel the others' load.
        return await asyncio.shield(task)

    def last(self, key: K, default: V) -> V:
        """The last value loaded for ``key``, however old: for callers that would rather serve
        a stale answer than none when a load fails."""
        hit = self._entries.get(key)
        return default if hit is None else hit[1]

    def clear(self) -> None:
        self._entries.clear()

    async def _load(self, key: K, load: Callable[[K], Awaitable[V]]) -> V:
        # Stamped before the load: a change made while it runs is not hidden for a whole TTL.
        started = time.monotonic()
        value = await load(key)
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (started, value)
        return value
