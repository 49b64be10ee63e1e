"""Keys: unknown, revoked and expired keys are indistinguishable; revocation reaches every replica."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.kit.db_types import utcnow
from app.main import create_app
from app.models import ApiKey
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


async def _status_and_body(url: str, token: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/v1/me", headers={"authorization": f"Bearer {token}"})
    return response.status_code, response.json()


async def test_unknown_revoked_and_expired_keys_get_the_same_401(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    revoked, expired = await admin.tenant(), await admin.tenant()
    assert (await admin.http.post(f"/admin/keys/{revoked.key_id}/revoke")).status_code == 200
    async with engine.begin() as conn:
        past = utcnow() - timedelta(seconds=1)
        await conn.execute(update(ApiKey).where(ApiKey.id == expired.key_id).values(expires_at=past))
    await asyncio.sleep(1.1)  # let the auth cache TTL pass for the key expired behind its back

    answers = [
        await _status_and_body(tollgate.url, token)
        for token in ("tg-" + "A" * 43, revoked.token, expired.token, "not-even-a-key")
    ]
    assert {status for status, _ in answers} == {401}
    assert len({str(body) for _, body in answers}) == 1


async def test_sdk_sees_authentication_error(tollgate: LiveServer) -> None:
    async with openai.AsyncOpenAI(base_url=tollgate.url + "/v1", api_key="tg-unknown", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


async def test_missing_key_is_401(tollgate: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        response = await http.post("/v1/chat/completions", json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_key_that_expires_stops_working(tollgate: LiveServer, admin: Admin) -> None:
    soon = (utcnow() + timedelta(seconds=1)).isoformat()
    tenant = await admin.tenant(expires_at=soon)
    assert (await _status_and_body(tollgate.url, tenant.token))[0] == 200
    await asyncio.sleep(1.2)
    assert (await _status_and_body(tollgate.url, tenant.token))[0] == 401


async def test_revocation_reaches_another_replica_within_two_seconds(
    tollgate: LiveServer, settings: Settings, admin: Admin
) -> None:
    tenant = await admin.tenant()
    with LiveServer(create_app(settings)) as replica:
        assert (await _status_and_body(replica.url, tenant.token))[0] == 200  # now cached there
        assert (await admin.http.post(f"/admin/keys/{tenant.key_id}/revoke")).status_code == 200
        assert (await _status_and_body(tollgate.url, tenant.token))[0] == 401  # the revoking replica: at once
        revoked_at = time.monotonic()
        while (await _status_and_body(replica.url, tenant.token))[0] == 200:
            assert time.monotonic() - revoked_at < 2.0
            await asyncio.sleep(0.05)


async def test_model_restrictions(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant(models=["gpt-4o-mini", "text-embedding-3-small"])
    client = tenant.client(tollgate.url)
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="text-embedding-3-large", input="x")
    assert sorted([m.id async for m in client.models.list()]) == ["gpt-4o-mini", "text-embedding-3-small"]
    assert (await client.models.retrieve("gpt-4o-mini")).id == "gpt-4o-mini"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-4o")


async def test_me_tells_the_caller_who_it_is(tollgate: LiveServer, admin: Admin) -> None:
    tenant = await admin.tenant(models=["gpt-4o-mini"])
    status, body = await _status_and_body(tollgate.url, tenant.token)
    assert status == 200
    assert body["user_name"] == tenant.user_name
    assert body["key_id"] == tenant.key_id
    assert body["allowed_models"] == ["gpt-4o-mini"]
    assert body["role"] == "member"


async def test_user_keys_cannot_reach_admin_routes(tollgate: LiveServer, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url, headers={"authorization": f"Bearer {tenant.token}"}) as http:
        for method, path in [("GET", "/admin/keys"), ("POST", "/admin/users"), ("POST", "/admin/keys/x/revoke")]:
            response = await http.request(method, path, json={"name": "x"})
            assert response.status_code == 403, path
            assert response.json()["error"]["code"] == "permission_denied"
