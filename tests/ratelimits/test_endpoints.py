"""Rate limits through the gateway: configuration, refusals with OpenAI's headers, fail-open."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from app.config import Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Admin, make_settings

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def _fresh_window() -> None:
    """Fixed windows roll at each whole minute; a test that counts within one must not straddle it."""
    if time.time() % 60 > 50:
        await asyncio.sleep(60.5 - time.time() % 60)


async def _limit(admin: Admin, scope: str, scope_id: str, **limits: int) -> dict[str, object]:
    response = await admin.http.put("/admin/rate-limits", json={"scope": scope, "scope_id": scope_id, **limits})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_rpm_refusal_carries_openai_headers(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    await _limit(admin, "key", tenant.key_id, rpm=2)
    await _fresh_window()
    client = tenant.client(tollgate.url)
    first = await client.chat.completions.with_raw_response.create(model=PRICED_MODEL, messages=MESSAGES)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    headers = caught.value.response.headers
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.body["type"] == "requests"  # type: ignore[index]


async def test_tpm_counts_prompt_plus_cap(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    await _limit(admin, "user", tenant.user_name, tpm=100)
    await _fresh_window()
    client = tenant.client(tollgate.url)
    await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=50)
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES, max_tokens=90)
    assert caught.value.body["type"] == "tokens"  # type: ignore[index]


async def test_concurrency_limit_frees_its_slot_when_a_stream_ends(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant()
    await _limit(admin, "key", tenant.key_id, concurrent=1)
    client = tenant.client(tollgate.url)
    stream = await client.chat.completions.create(
        model=PRICED_MODEL, messages=MESSAGES, stream=True, extra_body={"mock": {"chunk_delay_ms": 20}}
    )
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
    _ = [chunk async for chunk in stream]
    for _ in range(50):
        try:
            await client.chat.completions.create(model=PRICED_MODEL, messages=MESSAGES)
            return
        except openai.RateLimitError:
            await asyncio.sleep(0.02)
    pytest.fail("the slot was not released")


async def test_limits_admin_api(admin: Admin) -> None:
    tenant = await admin.tenant()
    created = await _limit(admin, "key", tenant.key_id, rpm=5, concurrent=2)
    replaced = await _limit(admin, "key", tenant.key_id, tpm=1000)
    assert replaced["id"] == created["id"]
    assert (replaced["rpm"], replaced["tpm"], replaced["concurrent"]) == (None, 1000, None)
    listed = (await admin.http.get("/admin/rate-limits", params={"scope": "key"})).json()["data"]
    assert created["id"] in [row["id"] for row in listed]
    assert (await admin.http.delete(f"/admin/rate-limits/{created['id']}")).status_code == 204
    assert (await admin.http.delete(f"/admin/rate-limits/{created['id']}")).status_code == 404
    empty = await admin.http.put("/admin/rate-limits", json={"scope": "key", "scope_id": tenant.key_id})
    assert empty.status_code == 400
    negative = await admin.http.put("/admin/rate-limits", json={"scope": "key", "scope_id": tenant.key_id, "rpm": 0})
    assert negative.json()["error"]["param"] == "rpm"


async def test_redis_down_fails_open_and_says_so(
    settings: Settings, mock_upstream: LiveServer, admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await admin.tenant()
    await _limit(admin, "key", tenant.key_id, rpm=1)
    broken = make_settings(settings.database.url, mock_upstream.url)
    broken.spend.redis_url = "redis://127.0.0.1:1/0"
    caplog.set_level(logging.WARNING, logger="tollgate.ratelimits")
    with LiveServer(create_app(broken)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for _ in range(3):
                response = await http.post(
                    "/v1/chat/completions",
                    json={"model": PRICED_MODEL, "messages": MESSAGES},
                    headers={"authorization": f"Bearer {tenant.token}"},
                )
                assert response.status_code == 200
    assert any("redis" in r.getMessage().lower() for r in caplog.records if r.name == "tollgate.ratelimits")
