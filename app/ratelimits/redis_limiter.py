"""The Redis backend of the rate limiter: counters shared by every replica."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.ratelimits.limiter import WINDOW_S, Decision, Limit, check_tokens, decide, scope_name

log = logging.getLogger("tollgate.ratelimits")

# A window key outlives its window by another full window, so a replica whose clock lags still finds it.
_WINDOW_KEY_TTL_S = 2 * WINDOW_S
_WARN_EVERY_S = 10.0
# Builtin TimeoutError is what asyncio.timeout raises; OSError covers DNS and socket failures.
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)

# Reads every counter and checks every limit before writing anything, so one refusal counts nothing.
# KEYS: per limit, three keys: its requests window, its tokens window, its slot set.
# ARGV: now, tokens, request_id, slot expiry, window key ttl, slot set ttl,
#       then per limit: rpm, tpm, concurrent (-1 where the limit does not apply).
# Reply: {reason (0 allowed, 1 requests, 2 tokens, 3 concurrency), 1-based index of the refusing limit,
#         then per limit: requests used, tokens used (both before this request)}.
_ACQUIRE_LUA = """
local now, tokens, member = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 3
local reply = {0, 0}
for i = 1, n do
  local k, a = (i - 1) * 3, 6 + (i - 1) * 3
  local rpm, tpm, cap = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local requests = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  local used = tonumber(redis.call('GET', KEYS[k + 2]) or '0')
  reply[2 * i + 1], reply[2 * i + 2] = requests, used
  local reason = 0
  if rpm >= 0 and requests + 1 > rpm then
    reason = 1
  elseif tpm >= 0 and used + tokens > tpm then
    reason = 2
  elseif cap >= 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    if not redis.call('ZSCORE', KEYS[k + 3], member) and redis.call('ZCARD', KEYS[k + 3]) >= cap then
      reason = 3
    end
  end
  if reason > 0 and reply[1] == 0 then
    reply[1], reply[2] = reason, i
  end
end
if reply[1] > 0 then
  return reply
end
for i = 1, n do
  local k, a = (i - 1) * 3, 6 + (i - 1) * 3
  if tonumber(ARGV[a + 1]) >= 0 then
    redis.call('INCR', KEYS[k + 1])
    redis.call('EXPIRE', KEYS[k + 1], ARGV[5])
  end
  if tonumber(ARGV[a + 2]) >= 0 then
    redis.call('INCRBY', KEYS[k + 2], ARGV[2])
    redis.call('EXPIRE', KEYS[k + 2], ARGV[5])
  end
  if tonumber(ARGV[a + 3]) >= 0 then
    redis.call('ZADD', KEYS[k + 3], ARGV[4], member)
    redis.call('EXPIRE', KEYS[k + 3], ARGV[6])
  end
end
return reply
"""
_REASONS = {1: "requests", 2: "tokens", 3: "concurrency"}


def _arg(value: int | None) -> int:
    return -1 if value is None else value


class RedisRateLimiter:
    """Counters shared by every replica through Redis: one script call per acquire does all the checks
    and then all the increments atomically.

    Fails open: when Redis cannot be reached, requests are let through (budgets still apply elsewhere)
    and ``failures`` counts how often that happened, for acquire and release alike.
    """

    def __init__(
        self,
        url: str,
        slot_ttl_s: float = 600.0,
        timeout_s: float = 0.25,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "tollgate:rl:",
    ) -> None:
        # No retries: a timed-out script may already have counted, and the deadline is what matters here.
        pool = ConnectionPool.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
        )
        self._redis = Redis.from_pool(pool)
        self._acquire_script = self._redis.register_script(_ACQUIRE_LUA)
        self._slot_ttl_s = slot_ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._prefix = key_prefix
        self._last_warning = -math.inf
        self.failures = 0

    async def acquire(self, request_id: str, limits: Sequence[Limit], tokens: int) -> Decision:
        check_tokens(tokens)
        if not limits:
            return Decision(allowed=True, headers={})
        now = self._clock()
        window = math.floor(now / WINDOW_S)
        keys: list[str] = []
        args: list[str | int | float] = [
            now,
            tokens,
            request_id,
            now + self._slot_ttl_s,
            _WINDOW_KEY_TTL_S,
            math.ceil(self._slot_ttl_s) + WINDOW_S,  # the set outlives its last slot, then goes
        ]
        for limit in limits:
            base = self._prefix + scope_name(limit)
            keys += [f"{base}:rpm:{window}", f"{base}:tpm:{window}", f"{base}:slots"]
            args += [_arg(limit.rpm), _arg(limit.tpm), _arg(limit.concurrent)]
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = await self._acquire_script(keys=keys, args=args)
        except _REDIS_DOWN as exc:
            self._failed("acquire", exc)
            return Decision(allowed=True, headers={})
        code, index, *flat = (int(x) for x in reply)
        used = list(zip(flat[0::2], flat[1::2], strict=True))
        refusal = (_REASONS[code], index - 1) if code else None
        return decide(limits, used, tokens, now, refusal)

    async def release(self, request_id: str, limits: Sequence[Limit]) -> None:
        slot_keys = [f"{self._prefix}{scope_name(lim)}:slots" for lim in limits if lim.concurrent is not None]
        if not slot_keys:
            return
        try:
            async with asyncio.timeout(self._timeout_s), self._redis.pipeline(transaction=False) as pipe:
                for key in slot_keys:
                    pipe.zrem(key, request_id)
                await pipe.execute()
        except _REDIS_DOWN as exc:
            self._failed("release", exc)

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.failures += 1
        # Real time, not the injected clock: this throttles log lines, it is not a rate limit.
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(
                "rate limiting is failing open: Redis %s failed (%d failures so far): %r",
                operation,
                self.failures,
                exc,
            )
