"""The upstream client and connections that upstream closes on its own clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from app.config import UpstreamSettings
from app.errors import UpstreamError
from app.gateway.upstream import Upstream

_ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok": true}'


class ClosesSecondRequest:
    """Answers the first request on a connection and keeps it alive, then reads the next request
    on that connection and closes it unanswered: the keep-alive race, made deterministic."""

    def __init__(self) -> None:
        self.requests = 0
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if served == 1:
                    return  # read, never answered
                served += 1
                writer.write(_ANSWER)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


@pytest.fixture
async def closing_upstream() -> AsyncIterator[tuple[ClosesSecondRequest, str]]:
    upstream = ClosesSecondRequest()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield upstream, f"http://127.0.0.1:{port}/v1"


async def test_a_post_on_a_connection_upstream_closed_is_sent_again(
    closing_upstream: tuple[ClosesSecondRequest, str],
) -> None:
    upstream, url = closing_upstream
    client = Upstream(UpstreamSettings(base_url=url, api_key=SecretStr("sk-test")))
    try:
        first = await client.request("POST", "/chat/completions", b"{}")
        second = await client.request("POST", "/chat/completions", b"{}")
    finally:
        await client.aclose()
    assert first.content == second.content == b'{"ok": true}'
    assert (upstream.requests, upstream.connections) == (3, 2), "the lost request went again, on a new connection"


async def test_a_streamed_body_is_not_sent_twice(closing_upstream: tuple[ClosesSecondRequest, str]) -> None:
    upstream, url = closing_upstream
    client = Upstream(UpstreamSettings(base_url=url, api_key=SecretStr("sk-test")))

    async def body() -> AsyncIterator[bytes]:
        yield b"{}"

    try:
        await client.request("POST", "/files", b"{}")
        with pytest.raises(UpstreamError):
            await client.upload("/files", body(), "application/json", 2)
    finally:
        await client.aclose()
    assert upstream.requests == 2, "a body that was consumed cannot be replayed"
