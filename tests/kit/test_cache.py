"""TtlCache: entries expire, concurrent misses share one load, a failed load is nobody's value."""

from __future__ import annotations

import asyncio

import pytest

from app.api_keys.schemas import Principal
from app.kit.cache import TtlCache
from app.models import RateLimit
from app.ratelimits.limiter import Limit
from app.ratelimits.repository import RateLimitRepository
from app.ratelimits.service import LimitsCache


class Loader:
    def __init__(self, value: str = "v", delay_s: float = 0.02, fail: bool = False) -> None:
        self.calls, self.value, self.delay_s, self.fail = 0, value, delay_s, fail

    async def __call__(self, key: str) -> str:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise OSError("database down")
        return f"{self.value}{self.calls}"


async def test_concurrent_misses_share_one_load_and_hits_need_none() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60)
    load = Loader()
    assert await asyncio.gather(*(cache.get("k", load) for _ in range(64))) == ["v1"] * 64
    assert await cache.get("k", load) == "v1"
    assert load.calls == 1


async def test_an_expired_entry_is_loaded_again_once() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=0.05)
    load = Loader()
    assert await cache.get("k", load) == "v1"
    await asyncio.sleep(0.06)
    assert await asyncio.gather(*(cache.get("k", load) for _ in range(10))) == ["v2"] * 10
    assert load.calls == 2


async def test_a_failed_load_fails_every_waiter_and_keeps_the_last_value() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=0)
    assert await cache.get("k", Loader()) == "v1"
    failing = Loader(fail=True)
    results = await asyncio.gather(*(cache.get("k", failing) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results) and failing.calls == 1
    assert cache.last("k", "none") == "v1" and cache.last("other", "none") == "none"


async def test_a_waiter_that_leaves_does_not_cancel_the_others_load() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl_s=60)
    load = Loader(delay_s=0.05)
    leaving = asyncio.create_task(cache.get("k", load))
    staying = asyncio.create_task(cache.get("k", load))
    await asyncio.sleep(0.01)
    leaving.cancel()
    assert await staying == "v1"
    assert load.calls == 1


async def test_the_limits_cache_loads_once_for_a_burst_of_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a busy key's entry expired, every request in flight missed at once, and each one
    queried the database (64 queries at 64 clients, every second)."""
    queries = 0

    async def applicable(self: object, key_id: str, user_id: str, team_id: str | None) -> list[RateLimit]:
        nonlocal queries
        queries += 1
        await asyncio.sleep(0.02)
        return [RateLimit(id="rl_1", scope="key", scope_id=key_id, rpm=10, tpm=None, concurrent=None)]

    class Session:
        async def __aenter__(self) -> Session:
            return self

        async def __aexit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(RateLimitRepository, "applicable", applicable)
    cache = LimitsCache(lambda: Session(), ttl_s=60)  # type: ignore[arg-type]
    principal = Principal("key_1", "k", "user_1", "u", None, "member", None, None)
    found = await asyncio.gather(*(cache.for_principal(principal) for _ in range(64)))
    assert found == [[Limit("key", "key_1", 10, None, None)]] * 64
    assert queries == 1
