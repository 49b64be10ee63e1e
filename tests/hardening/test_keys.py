"""Key security: every refused key gets the same answer by the same path, and no key reaches a log."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.api_keys import service as key_service
from app.api_keys.service import Authenticator
from app.config import UpstreamTarget
from app.errors import Unauthorized
from app.gateway.upstream import Target
from app.kit import crypto
from app.kit.db_types import utcnow
from app.models import ApiKey
from tests.fixtures.leaks import COLLECTOR, ISSUED_KEYS, find_leaks
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY, Admin, Tenant

# Headers that differ on every response by design: the time, the id, and the measured latencies.
_PER_RESPONSE = {"date", "x-request-id", "x-tollgate-overhead-ms", "x-tollgate-upstream-ms"}


async def _refusal(http: httpx.AsyncClient, token: str) -> tuple[int, bytes, dict[str, str]]:
    response = await http.post(
        "/v1/chat/completions",
        headers={b"authorization": f"Bearer {token}".encode("latin-1")},
        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    )
    headers = {k: v for k, v in response.headers.items() if k not in _PER_RESPONSE}
    return response.status_code, response.content, headers


async def test_unknown_revoked_expired_and_malformed_keys_get_identical_answers(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine
) -> None:
    revoked, expired = await admin.tenant(), await admin.tenant()
    assert (await admin.http.post(f"/admin/keys/{revoked.key_id}/revoke")).status_code == 200
    async with engine.begin() as conn:
        past = utcnow() - timedelta(seconds=1)
        await conn.execute(update(ApiKey).where(ApiKey.id == expired.key_id).values(expires_at=past))
    await asyncio.sleep(1.1)  # past the auth cache TTL, for the key expired behind the server's back
    tokens = {
        "unknown": "tg-" + secrets.token_urlsafe(32),
        "revoked": revoked.token,
        "expired": expired.token,
        "too short": "tg-x",
        "no prefix": "x" * 46,
        "one char off": expired.token[:-1] + ("A" if expired.token[-1] != "A" else "B"),
        "very long": "tg-" + "A" * 4000,
        "latin-1 bytes": "tg-\u00e9\u00e8\u00ff",
    }
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        answers = {name: await _refusal(http, token) for name, token in tokens.items()}
    first = answers["unknown"]
    assert first[0] == 401
    assert first[2]["www-authenticate"] == "Bearer"
    for name, answer in answers.items():
        assert answer == first, name


async def test_every_refused_key_is_hashed_and_looked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timing class: no shape of token short-cuts the HMAC and the lookup. A key that is
    unknown, revoked or expired is one HMAC and one indexed lookup that finds no row."""
    hashed: list[str] = []
    looked_up: list[str] = []
    original_hash = crypto.hash_api_key

    def spy_hash(token: str, secret: bytes) -> str:
        hashed.append(token)
        return original_hash(token, secret)

    async def no_row(self: Authenticator, digest: str) -> None:
        looked_up.append(digest)

    monkeypatch.setattr(key_service, "hash_api_key", spy_hash)
    monkeypatch.setattr(Authenticator, "_load", no_row)
    authenticator = Authenticator(None, b"s" * 32, ttl_s=0)  # type: ignore[arg-type]
    tokens = ["tg-" + "A" * 43, "tg-x", "x", "tg-\u00e9" * 10, "a" * 10_000, "\ud800"]
    for token in tokens:
        with pytest.raises(Unauthorized) as refused:
            await authenticator.authenticate(token)
        assert refused.value.message == "Incorrect API key provided."
    assert hashed == tokens
    assert len(set(looked_up)) == len(tokens)


def test_the_leak_check_finds_a_key_in_a_log_line() -> None:
    token = "tg-" + secrets.token_urlsafe(32)  # never issued: leaving it in the logs fails nothing
    logging.getLogger("tollgate.request").warning("auth header was Bearer %s", token)
    assert find_leaks(COLLECTOR.lines, [token]) != []
    assert find_leaks(COLLECTOR.lines, ["tg-" + secrets.token_urlsafe(32)]) == []


async def test_the_collector_sees_the_live_servers_request_lines(tollgate: LiveServer, tenant: Tenant) -> None:
    """The check is only as good as what it reads: the server's own request line must be in it."""
    marker = f"/v1/leak-check-{secrets.token_hex(8)}"
    seen = len(COLLECTOR.lines)
    async with tenant.http(tollgate.url) as http:
        assert (await http.get(marker)).status_code == 404

    def server_lines() -> list[str]:
        # The client's own httpx line names the path too, and is often written first: the server
        # thread writes its line only after the response has gone out.
        return [line for line in COLLECTOR.lines[seen:] if marker in line and line.startswith("tollgate.request ")]

    for _ in range(1500):  # a deadline of 30 s, not a timing claim
        if server_lines():
            break
        await asyncio.sleep(0.02)
    assert COLLECTOR in logging.getLogger().handlers
    assert len(server_lines()) == 1
    assert tenant.token in ISSUED_KEYS


async def test_a_logged_exception_is_searched_with_its_traceback(tollgate: LiveServer) -> None:
    token = "tg-" + secrets.token_urlsafe(32)
    try:
        raise RuntimeError(f"the key was {token}")
    except RuntimeError:
        logging.getLogger("tollgate.errors").exception("unhandled")
    assert find_leaks(COLLECTOR.lines[-1:], [token]) != []


async def test_upstream_key_is_in_no_answer(tollgate: LiveServer, tenant: Tenant) -> None:
    """Upstream's own 401 quotes the key it was given; Tollgate's answers never do."""
    async with tenant.http(tollgate.url) as http:
        answers = [
            await http.get("/v1/models"),
            await http.get("/v1/me"),
            await http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": "x"}),
            await http.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "mock": {"status": 401}},
            ),
        ]
    for answer in answers:
        text = answer.text + repr(answer.headers)
        assert UPSTREAM_KEY not in text
        assert UPSTREAM_KEY[-8:] not in text


def test_an_upstream_target_in_a_log_line_shows_no_key() -> None:
    target = Target.of(UpstreamTarget(name="org-b", base_url="http://127.0.0.1:1/v1", api_key=SecretStr(UPSTREAM_KEY)))
    assert UPSTREAM_KEY not in repr(target)
    assert UPSTREAM_KEY not in f"{target}"
    assert target.authorization == f"Bearer {UPSTREAM_KEY}"
