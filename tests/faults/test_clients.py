"""Slow and vanishing clients: a client that stops reading holds the upstream back instead of
making Tollgate buffer the stream, and a thousand clients that hang up mid-stream leave nothing
open, nothing reserved, and one correct ledger row each."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tests.faults.conftest import Rig, at_rest, serving
from tests.fixtures.servers import PRICED_MODEL, Admin, Tenant, lease_count, usage_rows

# The stream a slow client asks for: ~100 MB of SSE if it were ever read whole.
HUGE_STREAM_WORDS = 400_000
# Kernel socket buffers on both hops plus the small buffers of uvicorn and aiohttp stay well under this.
BUFFERED_AT_MOST = 32 * 1024 * 1024
HANGUPS = 1000


@pytest.fixture(scope="module")
def rig(settings: Settings) -> Iterator[Rig]:
    """Timeouts long enough for a mock planning a huge stream, or a thousand streams at once."""
    with serving(settings, read_timeout_s=30) as rig:
        yield rig


def _request(body: dict[str, object], token: str, port: int) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {token}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _until_steady(read: object, *, rounds: int = 200) -> int:
    """``read()`` once it has stopped growing for a few looks in a row."""
    assert callable(read)
    last, steady = -1, 0
    for _ in range(rounds):
        now = int(read())
        steady = steady + 1 if now == last else 0
        if steady >= 5:
            return now
        last = now
        await asyncio.sleep(0.1)
    return last


async def test_a_client_that_stops_reading_holds_the_upstream_back(
    rested: Rig, tenant: Tenant, engine: AsyncEngine
) -> None:
    port = int(rested.server.url.rsplit(":", 1)[1])
    body = {"model": PRICED_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body["mock"] = {"words": HUGE_STREAM_WORDS}
    before = rested.mock.state.streamed_bytes
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    writer.write(_request(body, tenant.token, port))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    await reader.readexactly(4096)  # a little of the stream, then the client stops reading

    sent = await _until_steady(lambda: rested.mock.state.streamed_bytes - before)
    assert 0 < sent < BUFFERED_AT_MOST, f"upstream ran ahead by {sent} bytes while the client read nothing"

    writer.close()  # and then it goes away
    tasks, connections, streams = await at_rest(rested)
    assert (connections, streams) == (0, 0) and tasks <= rested.tasks_at_rest
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.status == "client_disconnected" and row.completion_tokens > 0
    assert await lease_count(engine, tenant.key_id) == 0


async def test_a_thousand_hangups_leave_nothing_open_and_bill_each_one(
    rested: Rig, admin: Admin, engine: AsyncEngine
) -> None:
    tenant = await admin.tenant()
    budget_id = await admin.budget("key", tenant.key_id, "100")
    body = {"model": PRICED_MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    body["mock"] = {"words": 40, "chunk_delay_ms": 20}
    gate = asyncio.Semaphore(50)

    async def hang_up(http: httpx.AsyncClient) -> None:
        async with gate, http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break  # the first event, then gone

    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=rested.server.url, headers={"authorization": f"Bearer {tenant.token}"}, limits=limits, timeout=30
    ) as http:
        await asyncio.gather(*(hang_up(http) for _ in range(HANGUPS)))

    tasks, connections, streams = await at_rest(rested)
    assert (connections, streams) == (0, 0) and tasks <= rested.tasks_at_rest
    rows = await usage_rows(engine, tenant.key_id)
    assert len(rows) == HANGUPS and {r.status for r in rows} == {"client_disconnected"}
    assert all(r.prompt_tokens > 0 and r.cost_micros > 0 for r in rows)
    state = await admin.budget_state(budget_id)
    assert state["reserved_micros"] == 0 and await lease_count(engine, tenant.key_id) == 0
    assert state["spent_micros"] == sum(r.cost_micros for r in rows)
