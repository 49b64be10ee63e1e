"""The rate-limiting engine, run against both backends: process memory and Redis (db 15, flushed per test)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.ratelimits.limiter import (
    Limit,
    MemoryRateLimiter,
    RateLimiter,
    create_rate_limiter,
)
from app.ratelimits.redis_limiter import RedisRateLimiter

REDIS_URL = "redis://127.0.0.1:6379/15"
UNREACHABLE_URL = "redis://127.0.0.1:1/0"
WINDOW_START = 1_700_000_040.0  # a multiple of 60: the first second of a window


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(WINDOW_START + 15.25)


async def flush_test_db() -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryRateLimiter(clock=clock)
        return
    await flush_test_db()
    backend = RedisRateLimiter(REDIS_URL, timeout_s=2.0, clock=clock)
    yield backend
    await backend.aclose()
    # Failing open would make every "allowed" assertion pass without Redis ever being asked.
    assert backend.failures == 0


async def test_rpm_lets_exactly_n_through_then_refuses_until_the_next_window(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limits = [Limit("key", "k1", rpm=3)]
    for i in range(3):
        assert (await limiter.acquire(f"r{i}", limits, tokens=1)).allowed

    refused = await limiter.acquire("r3", limits, tokens=1)
    assert not refused.allowed
    assert (refused.reason, refused.scope) == ("requests", "key")
    assert refused.retry_after_s == 45  # 44.75 s to the window's end, rounded up
    assert refused.headers["retry-after"] == "45"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"

    clock.advance(44.75)  # exactly the next window's first instant
    assert (await limiter.acquire("r4", limits, tokens=1)).allowed


async def test_tpm_refuses_the_request_that_would_cross_and_any_oversize_request(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limits = [Limit("team", "t1", tpm=100)]
    assert (await limiter.acquire("r1", limits, tokens=60)).allowed
    crossing = await limiter.acquire("r2", limits, tokens=50)
    assert (crossing.allowed, crossing.reason, crossing.scope) == (False, "tokens", "team")
    assert crossing.headers["x-ratelimit-remaining-tokens"] == "40"
    assert (await limiter.acquire("r3", limits, tokens=40)).allowed  # lands exactly on the limit
    assert not (await limiter.acquire("r4", limits, tokens=1)).allowed

    clock.advance(60)
    oversize = await limiter.acquire("r5", limits, tokens=101)
    assert (oversize.allowed, oversize.reason) == (False, "tokens")
    assert (await limiter.acquire("r6", limits, tokens=100)).allowed


async def test_concurrency_cap_and_release_frees_a_slot(limiter: RateLimiter) -> None:
    limits = [Limit("user", "u1", concurrent=2)]
    assert (await limiter.acquire("r1", limits, tokens=0)).allowed
    assert (await limiter.acquire("r2", limits, tokens=0)).allowed

    refused = await limiter.acquire("r3", limits, tokens=0)
    assert (refused.allowed, refused.reason, refused.scope) == (False, "concurrency", "user")
    assert refused.retry_after_s == 1
    assert refused.headers == {"retry-after": "1"}  # no rpm or tpm applies, so no x-ratelimit headers

    await limiter.release("r1", limits)
    assert (await limiter.acquire("r3", limits, tokens=0)).allowed
    assert not (await limiter.acquire("r4", limits, tokens=0)).allowed


async def test_expired_slots_stop_counting(limiter: RateLimiter, clock: FakeClock) -> None:
    limits = [Limit("key", "k1", concurrent=1)]
    assert (await limiter.acquire("crashed", limits, tokens=0)).allowed  # never released
    assert not (await limiter.acquire("r2", limits, tokens=0)).allowed

    clock.advance(599)
    assert not (await limiter.acquire("r2", limits, tokens=0)).allowed
    clock.advance(2)  # past the default 600 s slot ttl
    assert (await limiter.acquire("r2", limits, tokens=0)).allowed


async def test_a_refusal_by_one_scope_counts_nothing_in_the_others(limiter: RateLimiter) -> None:
    key = Limit("key", "k1", rpm=5, tpm=1000, concurrent=1)
    user = Limit("user", "u1", rpm=1)
    assert (await limiter.acquire("r1", [key, user], tokens=100)).allowed
    await limiter.release("r1", [key, user])

    refused = await limiter.acquire("r2", [key, user], tokens=100)
    assert (refused.allowed, refused.reason, refused.scope) == (False, "requests", "user")

    # Had r2 counted on the key, these would be 3 and 800, and the key's only slot would be taken.
    alone = await limiter.acquire("r3", [key], tokens=100)
    assert alone.allowed
    assert alone.headers["x-ratelimit-remaining-requests"] == "3"
    assert alone.headers["x-ratelimit-remaining-tokens"] == "800"


async def test_headers_follow_the_tightest_limit_of_each_kind(limiter: RateLimiter, clock: FakeClock) -> None:
    clock.now = WINDOW_START + 0.5
    limits = [Limit("key", "k1", rpm=10, tpm=5000), Limit("team", "t1", rpm=5, tpm=1000)]
    decision = await limiter.acquire("r1", limits, tokens=100)
    assert decision.headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "1m0s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "1m0s",
    }

    # The key's tokens are now the tighter limit: 5000 - 4950 = 50 left, versus the team's 1000 - 900.
    clock.now = WINDOW_START + 59.5
    key_only = await limiter.acquire("r2", limits[:1], tokens=4850)
    assert key_only.headers["x-ratelimit-reset-tokens"] == "1s"
    decision = await limiter.acquire("r3", limits, tokens=0)
    assert decision.headers["x-ratelimit-limit-tokens"] == "5000"
    assert decision.headers["x-ratelimit-remaining-tokens"] == "50"
    assert decision.headers["x-ratelimit-remaining-requests"] == "3"

    refused = await limiter.acquire("r4", limits, tokens=10_000)
    assert refused.headers["x-ratelimit-remaining-tokens"] == "50"  # nothing taken, never negative
    assert refused.headers["retry-after"] == "1"

    rpm_only = await limiter.acquire("r5", [Limit("user", "u1", rpm=2)], tokens=5)
    assert set(rpm_only.headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


async def test_three_replicas_share_one_limit_exactly(clock: FakeClock) -> None:
    await flush_test_db()
    replicas = [RedisRateLimiter(REDIS_URL, timeout_s=2.0, clock=clock) for _ in range(3)]
    limits = [Limit("key", "shared", rpm=40)]
    try:
        decisions = await asyncio.gather(
            *(replica.acquire(f"r{n}-{i}", limits, tokens=1) for n, replica in enumerate(replicas) for i in range(50))
        )
    finally:
        for replica in replicas:
            await replica.aclose()
    assert sum(d.allowed for d in decisions) == 40
    assert {d.reason for d in decisions if not d.allowed} == {"requests"}
    assert [r.failures for r in replicas] == [0, 0, 0]


async def test_fails_open_when_redis_is_unreachable(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisRateLimiter(UNREACHABLE_URL)
    limits = [Limit("key", "k1", rpm=1, concurrent=1)]
    with caplog.at_level(logging.WARNING, logger="tollgate.ratelimits"):
        for i in range(20):
            decision = await limiter.acquire(f"r{i}", limits, tokens=10)
            assert (decision.allowed, decision.headers) == (True, {})
        await limiter.release("r0", limits)
    await limiter.aclose()
    assert limiter.failures == 21
    warnings = [r for r in caplog.records if r.name == "tollgate.ratelimits"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


async def test_fails_open_when_redis_hangs() -> None:
    done = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await done.wait()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
    try:
        decision = await asyncio.wait_for(limiter.acquire("r1", [Limit("key", "k1", rpm=1)], tokens=1), 2)
    finally:
        await limiter.aclose()
        done.set()
        server.close()
        await server.wait_closed()
    assert (decision.allowed, limiter.failures) == (True, 1)


async def test_memory_keeps_only_the_current_window(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(slot_ttl_s=30, clock=clock)
    for i in range(100):
        await limiter.acquire(f"r{i}", [Limit("key", f"k{i}", rpm=10, tpm=10, concurrent=1)], tokens=1)
    clock.advance(60)
    await limiter.acquire("last", [Limit("key", "k0", rpm=10)], tokens=1)
    assert (len(limiter._requests), len(limiter._tokens), len(limiter._slots)) == (1, 0, 0)


async def test_negative_tokens_are_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="tokens"):
        await MemoryRateLimiter().acquire("r1", [Limit("key", "k1", tpm=10)], tokens=-1)


async def test_create_rate_limiter_picks_the_backend() -> None:
    memory = create_rate_limiter(None)
    shared = create_rate_limiter(REDIS_URL, slot_ttl_s=30)
    assert isinstance(memory, MemoryRateLimiter)
    assert isinstance(shared, RedisRateLimiter)
    await shared.aclose()
