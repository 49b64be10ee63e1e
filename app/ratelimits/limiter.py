"""Rate limits per scope (a key, a user, a team): requests and tokens per minute, and requests in flight.

Windows are fixed and clock-aligned (``floor(now / 60)``), so every replica agrees on the current window
without coordinating and a finished window's counters can simply expire. A request is checked against
every limit that applies to it, all or nothing: a refusal anywhere counts nothing anywhere, so a client
that keeps hitting one limit does not burn its allowance under the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class Limit:
    scope: str  # "key" | "user" | "team"
    scope_id: str
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None


@dataclass(slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]  # OpenAI-style; empty when no rpm or tpm applies
    retry_after_s: int | None = None
    reason: str | None = None  # "requests" | "tokens" | "concurrency" when refused
    scope: str | None = None  # the scope whose limit refused


class RateLimiter(Protocol):
    async def acquire(self, request_id: str, limits: Sequence[Limit], tokens: int) -> Decision: ...

    async def release(self, request_id: str, limits: Sequence[Limit]) -> None: ...

    async def aclose(self) -> None: ...


# (reason, index of the refusing limit); None when every limit allows the request.
Refusal = tuple[str, int] | None


def scope_name(limit: Limit) -> str:
    return f"{limit.scope}:{limit.scope_id}"


def check_tokens(tokens: int) -> None:
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")


def _window_refusal(limit: Limit, used_requests: int, used_tokens: int, tokens: int) -> str | None:
    if limit.rpm is not None and used_requests + 1 > limit.rpm:
        return "requests"
    if limit.tpm is not None and used_tokens + tokens > limit.tpm:
        return "tokens"
    return None


def format_reset(seconds: int) -> str:
    """OpenAI's reset format: "59s", "1m0s"."""
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


def _add_headers(headers: dict[str, str], kind: str, limit_and_used: list[tuple[int, int]], reset: str) -> None:
    if not limit_and_used:
        return
    limit, used = min(limit_and_used, key=lambda pair: pair[0] - pair[1])
    headers[f"x-ratelimit-limit-{kind}"] = str(limit)
    headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, limit - used))
    headers[f"x-ratelimit-reset-{kind}"] = reset


def decide(
    limits: Sequence[Limit], used: Sequence[tuple[int, int]], tokens: int, now: float, refusal: Refusal
) -> Decision:
    """The decision and its headers, given each limit's (requests, tokens) already used in this window."""
    window_end = (math.floor(now / WINDOW_S) + 1) * WINDOW_S
    reset_s = max(1, math.ceil(window_end - now))
    reset = format_reset(reset_s)
    # Remaining counts are after this request; a refused request took nothing.
    taken = 0 if refusal else 1
    pairs = list(zip(limits, used, strict=True))
    headers: dict[str, str] = {}
    _add_headers(headers, "requests", [(lim.rpm, r + taken) for lim, (r, _) in pairs if lim.rpm is not None], reset)
    _add_headers(
        headers, "tokens", [(lim.tpm, t + taken * tokens) for lim, (_, t) in pairs if lim.tpm is not None], reset
    )
    if refusal is None:
        return Decision(allowed=True, headers=headers)
    reason, index = refusal
    # A slot frees whenever a request finishes, not at the window's end, so retry soon.
    retry_after = 1 if reason == "concurrency" else reset_s
    headers["retry-after"] = str(retry_after)
    return Decision(False, headers, retry_after_s=retry_after, reason=reason, scope=limits[index].scope)


class MemoryRateLimiter:
    """Counters in this process's memory. Single replica only: each replica would grant the full limit.

    Check-then-increment runs without an await in between, which is what makes it atomic under asyncio.
    """

    def __init__(self, slot_ttl_s: float = 600.0, clock: Callable[[], float] = time.time) -> None:
        self._slot_ttl_s = slot_ttl_s
        self._clock = clock
        self._window: int | None = None
        self._requests: dict[str, int] = {}
        self._tokens: dict[str, int] = {}
        self._slots: dict[str, dict[str, float]] = {}  # scope -> request_id -> expiry

    async def acquire(self, request_id: str, limits: Sequence[Limit], tokens: int) -> Decision:
        check_tokens(tokens)
        now = self._clock()
        self._roll_window(now)
        names = [scope_name(limit) for limit in limits]
        used = [(self._requests.get(name, 0), self._tokens.get(name, 0)) for name in names]
        refusal = self._refusal(request_id, limits, names, used, tokens, now)
        if refusal is None:
            for limit, name in zip(limits, names, strict=True):
                if limit.rpm is not None:
                    self._requests[name] = self._requests.get(name, 0) + 1
                if limit.tpm is not None:
                    self._tokens[name] = self._tokens.get(name, 0) + tokens
                if limit.concurrent is not None:
                    self._slots.setdefault(name, {})[request_id] = now + self._slot_ttl_s
        return decide(limits, used, tokens, now, refusal)

    async def release(self, request_id: str, limits: Sequence[Limit]) -> None:
        for limit in limits:
            name = scope_name(limit)
            slots = self._slots.get(name)
            if slots is not None:
                slots.pop(request_id, None)
                if not slots:
                    del self._slots[name]

    async def aclose(self) -> None:
        return None

    def _refusal(
        self,
        request_id: str,
        limits: Sequence[Limit],
        names: list[str],
        used: list[tuple[int, int]],
        tokens: int,
        now: float,
    ) -> Refusal:
        for index, limit in enumerate(limits):
            reason = _window_refusal(limit, *used[index], tokens)
            if reason is None and limit.concurrent is not None:
                slots = self._live_slots(names[index], now)
                # A request that already holds a slot (a retried acquire) does not need a second one.
                if request_id not in slots and len(slots) >= limit.concurrent:
                    reason = "concurrency"
            if reason is not None:
                return reason, index
        return None

    def _live_slots(self, name: str, now: float) -> dict[str, float]:
        slots = self._slots.get(name, {})
        for request_id in [rid for rid, expiry in slots.items() if expiry <= now]:
            del slots[request_id]
        if not slots:
            self._slots.pop(name, None)
        return slots

    def _roll_window(self, now: float) -> None:
        window = math.floor(now / WINDOW_S)
        if window == self._window:
            return
        # Only the current window is ever read, so older ones go; the once-a-minute sweep of slots keeps
        # scopes that are never touched again from holding expired slots forever.
        self._window = window
        self._requests.clear()
        self._tokens.clear()
        for name in list(self._slots):
            self._live_slots(name, now)


def create_rate_limiter(redis_url: str | None, slot_ttl_s: float = 600.0, timeout_s: float = 1.0) -> RateLimiter:
    """Redis when a URL is configured (needed with more than one replica), else process memory."""
    if redis_url:
        # Imported here: the Redis client is 5 MB of a worker's memory that one replica never needs.
        from app.ratelimits.redis_limiter import RedisRateLimiter

        return RedisRateLimiter(redis_url, slot_ttl_s=slot_ttl_s, timeout_s=timeout_s)
    return MemoryRateLimiter(slot_ttl_s=slot_ttl_s)
