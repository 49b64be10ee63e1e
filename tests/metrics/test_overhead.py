"""Every response says how much time Tollgate itself added: JSON, SSE and error answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx
from fastapi import FastAPI
from openai.types.chat import ChatCompletionMessageParam

from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import PRICED_MODEL, Tenant

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something."}]
CHAT = "/v1/chat/completions"


def _timings(headers: Mapping[str, str], elapsed_ms: float) -> tuple[float, float]:
    overhead = float(headers["x-tollgate-overhead-ms"])
    upstream = float(headers["x-tollgate-upstream-ms"])
    # Both are parts of the time the client waited, and neither can be negative.
    assert 0 <= overhead <= elapsed_ms
    assert 0 <= upstream <= elapsed_ms
    assert overhead + upstream <= elapsed_ms
    return overhead, upstream


async def test_json_answer_separates_tollgate_time_from_upstream_time(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    started = time.perf_counter()
    raw = await client.chat.completions.with_raw_response.create(
        model=PRICED_MODEL, messages=MESSAGES, extra_body={"mock": {"delay_ms": 80}}
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    overhead, upstream = _timings(raw.headers, elapsed_ms)
    # The upstream's deliberate delay is upstream time, not Tollgate's.
    assert upstream >= 80
    assert overhead < elapsed_ms - 80


async def test_stream_carries_the_overhead_to_its_first_byte_in_its_headers(
    tollgate: LiveServer, tenant: Tenant
) -> None:
    body = {"model": PRICED_MODEL, "messages": MESSAGES, "stream": True, "mock": {"delay_ms": 60}}
    async with tenant.http(tollgate.url) as http:
        started = time.perf_counter()
        async with http.stream("POST", CHAT, json=body) as response:
            headers_ms = (time.perf_counter() - started) * 1000
            assert response.headers["content-type"].startswith("text/event-stream")
            overhead, upstream = _timings(response.headers, headers_ms)
            assert upstream >= 60
            events = [line async for line in response.aiter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    assert overhead < headers_ms - 60


async def test_error_answers_carry_the_headers_too(tollgate: LiveServer, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url, timeout=10) as anonymous, tenant.http(tollgate.url) as http:
        bad_json = {"content-type": "application/json"}
        upstream_fails = {"model": PRICED_MODEL, "messages": MESSAGES, "mock": {"status": 500}}
        cases: list[tuple[int, Callable[[], Awaitable[httpx.Response]]]] = [
            (401, lambda: anonymous.post(CHAT, json={"model": PRICED_MODEL, "messages": MESSAGES})),
            (404, lambda: http.get("/v1/no/such/route")),
            (400, lambda: http.post(CHAT, content=b"{not json", headers=bad_json)),
            (502, lambda: http.post(CHAT, json=upstream_fails)),
        ]
        for expected, call in cases:
            started = time.perf_counter()
            response = await call()
            elapsed_ms = (time.perf_counter() - started) * 1000
            assert response.status_code == expected, response.text
            assert "error" in response.json()
            _, upstream = _timings(response.headers, elapsed_ms)
            if expected != 502:
                assert upstream == 0, "no upstream call was made"


async def test_a_refusal_before_the_body_is_read_carries_them(tollgate: LiveServer) -> None:
    """A declared oversize body is refused by a middleware before a byte of it is read."""
    host, port = tollgate.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.perf_counter()
    writer.write(f"POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
    elapsed_ms = (time.perf_counter() - started) * 1000
    writer.close()
    assert head.startswith("http/1.1 413")
    headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    assert _timings(headers, elapsed_ms)[1] == 0


async def test_unhandled_errors_get_the_envelope_and_the_headers(tollgate: LiveServer) -> None:
    """Starlette's last-resort 500 is sent outside every middleware; Tollgate sends its own instead."""
    app = tollgate.app
    assert isinstance(app, FastAPI)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test-broken-route", broken)
    try:
        async with httpx.AsyncClient(base_url=tollgate.url, timeout=10) as http:
            started = time.perf_counter()
            response = await http.get("/test-broken-route")
            elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        app.router.routes.pop()
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert response.headers["x-request-id"].startswith("req_")
    _timings(response.headers, elapsed_ms)
