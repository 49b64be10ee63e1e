"""Embeddings and the model list, end to end, plus byte-faithful relay checked at the transport."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from decimal import Decimal

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.main import create_app
from app.mock_upstream import MODELS
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, Tenant, make_settings, usage_rows


async def test_embeddings_through_the_sdk_are_metered(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    client = tenant.client(tollgate.url)
    result = await client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"], dimensions=16)
    assert [len(d.embedding) for d in result.data] == [16, 16]
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.endpoint == "embeddings"
    assert row.prompt_tokens == result.usage.prompt_tokens > 0
    # text-embedding-3-small is $0.02 per million input tokens in the price table.
    assert row.cost_micros == math.ceil(result.usage.prompt_tokens * Decimal("0.02"))


async def test_bad_embedding_input_is_400(tollgate: LiveServer, tenant: Tenant) -> None:
    headers = {"authorization": f"Bearer {tenant.token}"}
    async with httpx.AsyncClient(base_url=tollgate.url, headers=headers) as http:
        for bad in ({"model": "text-embedding-3-small"}, {"model": "text-embedding-3-small", "input": [None]}):
            response = await http.post("/v1/embeddings", json=bad)
            assert response.status_code == 400
            assert response.json()["error"]["param"] == "input"


async def test_unrestricted_key_sees_upstreams_models(tollgate: LiveServer, tenant: Tenant) -> None:
    listed = [m.id async for m in tenant.client(tollgate.url).models.list()]
    assert sorted(listed) == sorted(MODELS)


# --- byte-faithful relay, checked against a raw ASGI upstream that records what it gets ----------

ODD_JSON = (
    b'{ "id":"chatcmpl-odd",  "object":"chat.completion", "created":1, "model":"gpt-4o-mini",\n'
    b' "choices":[{"index":0,"message":{"role":"assistant","content":"caf\\u00e9 \xe2\x9c\x93"},'
    b'"finish_reason":"stop"}],\n "usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12},'
    b' "x_future_field":[1.50, 2e3] }'
)
SSE = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"Hel"}}],"usage":null}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
    b'"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\n'
    b"data: [DONE]\n\n"
)


class Recorder:
    """A raw ASGI upstream: records request bodies, answers with ODD_JSON or SSE sent in pieces."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        streamed = b'"stream":true' in body.replace(b" ", b"")
        content_type = b"text/event-stream" if streamed else b"application/json"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]})
        # Split mid-event so the relay must reassemble events across reads.
        parts = [SSE[:70], SSE[70:250], SSE[250:]] if streamed else [ODD_JSON]
        for part in parts:
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await anyio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def faithful(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Recorder]]:
    recorder = Recorder()
    with LiveServer(recorder) as upstream:
        app: FastAPI = create_app(make_settings(settings.database.url, upstream.url))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"authorization": f"Bearer {ADMIN_KEY}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://tollgate", headers=headers) as http:
                yield http, recorder


async def test_json_is_relayed_byte_for_byte_both_ways(faithful: tuple[httpx.AsyncClient, Recorder]) -> None:
    http, recorder = faithful
    sent = b'{"model": "gpt-4o-mini",  "messages":[{"role":"user","content":"hi"}], "zz_unknown": {"a": [1, 2.50]}}'
    response = await http.post("/v1/chat/completions", content=sent, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.content == ODD_JSON
    assert recorder.bodies[-1] == sent


async def test_sse_is_relayed_event_by_event_without_the_unrequested_usage_event(
    faithful: tuple[httpx.AsyncClient, Recorder],
) -> None:
    http, recorder = faithful
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    events = SSE.split(b"\n\n")
    assert response.content == events[0] + b"\n\n" + events[1] + b"\n\n" + events[3] + b"\n\n"
    assert b'"include_usage":true' in recorder.bodies[-1]


async def test_model_ids_cannot_reach_other_upstream_routes(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette
) -> None:
    headers = {"authorization": f"Bearer {tenant.token}"}
    before = len(mock_app.state.requests)
    async with httpx.AsyncClient(base_url=tollgate.url, headers=headers) as http:
        # httpx resolves these dot segments itself; /v1/files is served now, the admin API never is.
        response = await http.get("/v1/models/../organization/costs")
        assert response.status_code == 404
        response = await http.get("/v1/models/x%2F..%2F..%2Ffiles")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    # A name with a dot segment is refused before upstream; were it sent unquoted, the segments
    # would have been resolved and upstream asked for /v1/files.
    assert all(r.path.startswith("/v1/models/") for r in mock_app.state.requests[before:])
