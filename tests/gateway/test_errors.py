"""Bad input, upstream failures and unknown routes: always OpenAI's envelope, never upstream's text."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.config import Settings
from app.main import create_app
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, UPSTREAM_KEY, Tenant, make_settings, usage_rows

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
LEAKS = ("org-mockorg", "sk-mock", UPSTREAM_KEY, "LEAKED")


def assert_envelope(response: httpx.Response, status: int, code: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


@pytest.fixture
async def http(tollgate: LiveServer, tenant: Tenant) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"authorization": f"Bearer {tenant.token}"}
    async with httpx.AsyncClient(base_url=tollgate.url, headers=headers, timeout=10) as client:
        yield client


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": 5, "messages": MESSAGES}, "model"),
        ({"model": "gpt-4o-mini", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "gpt-4o-mini", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
        ({"model": "gpt-4o-mini", "messages": MESSAGES, "n": True}, "n"),
        ({"model": "gpt-4o-mini", "messages": MESSAGES, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
async def test_wrong_types_are_refused_before_upstream(
    http: httpx.AsyncClient, mock_app: Starlette, body: dict[str, object], param: str
) -> None:
    before = len(mock_app.state.requests)
    error = assert_envelope(await http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param
    assert len(mock_app.state.requests) == before


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b"\xff\xfe{}", b"", b"[" * 100_00 + b"]" * 100_00],
    ids=["malformed", "array", "invalid-utf8", "empty", "deeply-nested"],
)
async def test_unparseable_bodies_get_400_and_nothing_is_written(
    http: httpx.AsyncClient, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette, content: bytes
) -> None:
    before = len(mock_app.state.requests)
    response = await http.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    assert_envelope(response, 400, "invalid_json")
    assert len(mock_app.state.requests) == before
    assert await usage_rows(engine, tenant.key_id) == []


async def test_oversized_body_is_refused_with_413(http: httpx.AsyncClient, mock_app: Starlette) -> None:
    before = len(mock_app.state.requests)
    huge = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_envelope(await http.post("/v1/chat/completions", json=huge), 413, "request_too_large")

    async def lying_body() -> AsyncIterator[bytes]:  # chunked, no content-length to trust
        for _ in range(100):
            yield b" " * 1024

    response = await http.post("/v1/chat/completions", content=lying_body())
    assert_envelope(response, 413, "request_too_large")
    assert len(mock_app.state.requests) == before


async def test_unpriced_model_is_refused_without_calling_upstream(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette
) -> None:
    before = len(mock_app.state.requests)
    with pytest.raises(openai.BadRequestError) as caught:
        await tenant.client(tollgate.url).chat.completions.create(model="my-private-model", messages=MESSAGES)
    assert caught.value.code == "model_not_priced"
    assert len(mock_app.state.requests) == before


@pytest.mark.parametrize(("status", "expected"), [(500, 502), (503, 502), (401, 502), (429, 429)])
async def test_upstream_errors_are_mapped_without_leaking(
    http: httpx.AsyncClient, tenant: Tenant, engine: AsyncEngine, status: int, expected: int
) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "mock": {"status": status, "retry_after": 7}}
    response = await http.post("/v1/chat/completions", json=body)
    assert_envelope(response, expected)
    for leak in LEAKS:
        assert leak not in response.text
        assert all(leak not in value for value in response.headers.values())
    assert "openai-organization" not in response.headers
    if status == 429:
        assert response.headers["retry-after"] == "7"
    [row] = await usage_rows(engine, tenant.key_id)
    assert (row.status, row.http_status, row.cost_micros) == ("upstream_error", expected, 0)


async def test_upstream_client_error_keeps_its_meaning_but_not_its_secrets(http: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "mock": {"status": 400}}
    response = await http.post("/v1/chat/completions", json=body)
    error = assert_envelope(response, 400)
    assert error["type"] == "invalid_request_error"
    for leak in LEAKS:
        assert leak not in response.text


async def test_upstream_timeout_is_a_504(settings: Settings, mock_upstream: LiveServer, tenant: Tenant) -> None:
    slow = make_settings(settings.database.url, mock_upstream.url)
    slow.upstream.read_timeout_s = 0.3
    with LiveServer(create_app(slow)) as server:
        client = tenant.client(server.url)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_body={"mock": {"delay_ms": 2000}}
            )
    assert caught.value.status_code == 504
    assert caught.value.code == "upstream_timeout"


async def test_unreachable_upstream_is_a_502(settings: Settings, tenant: Tenant) -> None:
    down = make_settings(settings.database.url, "http://127.0.0.1:9")
    with LiveServer(create_app(down)) as server, pytest.raises(openai.APIStatusError) as caught:
        await tenant.client(server.url).embeddings.create(model="text-embedding-3-small", input="x")
    assert caught.value.status_code == 502
    assert UPSTREAM_KEY not in str(caught.value.body)


async def test_unknown_route_and_wrong_method_use_the_envelope(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.get("/v1/does-not-exist"), 404, "unknown_url")
    assert_envelope(await http.post("/v1/organization/admin_api_keys", json={}), 404)
    assert_envelope(await http.get("/v1/chat/completions"), 405)


async def test_every_response_carries_a_request_id(http: httpx.AsyncClient) -> None:
    ok = await http.get("/v1/me")
    failed = await http.get("/nope")
    assert ok.headers["x-request-id"].startswith("req_")
    assert failed.headers["x-request-id"] != ok.headers["x-request-id"]


async def test_declared_oversize_is_refused_on_every_route(tollgate: LiveServer) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=tollgate.url, headers=headers) as http:
        response = await http.post("/admin/users", content=b'{"name": "' + b"x" * 100_000 + b'"}')
    assert_envelope(response, 413, "request_too_large")
    assert response.headers["x-request-id"]


async def test_cors_preflight_for_configured_origins(settings: Settings, mock_upstream: LiveServer) -> None:
    configured = make_settings(settings.database.url, mock_upstream.url, cors_origins=["https://app.example"])
    app = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tollgate") as http:
            allowed = await http.options(
                "/v1/chat/completions",
                headers={
                    "origin": "https://app.example",
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization,content-type",
                },
            )
            other = await http.get("/healthz", headers={"origin": "https://evil.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers


async def test_client_leaving_mid_body_is_quiet_and_writes_nothing(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A load generator stopping, or a phone losing signal, while the body is on its way."""
    host, port = tollgate.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {tenant.token}\r\nContent-Length: 1000\r\n\r\n".encode()
        + b'{"model": "gpt-4o-mini", "mess'
    )
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.2)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client leaving is not a server error"
    assert await usage_rows(engine, tenant.key_id) == []


async def test_error_answers_take_no_worker_thread(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every handler is async: Starlette would run a plain-def one in a worker thread, a hop per 401,
    404 and refused budget."""

    async def no_thread(*_: object, **__: object) -> None:
        raise AssertionError("an error handler ran in a worker thread")

    monkeypatch.setattr("starlette._exception_handler.run_in_threadpool", no_thread)
    monkeypatch.setattr("starlette.middleware.errors.run_in_threadpool", no_thread)
    app = create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert_envelope(await client.get("/v1/no-such-route"), 404, "unknown_url")
        assert_envelope(await client.delete("/v1/models"), 405, "method_not_allowed")
        assert_envelope(await client.get("/v1/models"), 401)
        assert_envelope(await client.post("/v1/chat/completions", json={}), 401)
