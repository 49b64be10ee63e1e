"""Hostile input: each case gets a clear OpenAI-style 4xx, no crash, and writes no row."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.kit.middleware import LINGER_BYTES
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, usage_rows
from tests.hardening.conftest import Unchanged, assert_refused

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
JSON = {"content-type": "application/json"}


async def test_a_declared_oversize_body_is_refused_before_it_is_sent(tollgate: LiveServer, tenant: Tenant) -> None:
    """The 413 arrives while the client has sent only the headers and a few bytes of 50 MB."""
    address = urlsplit(tollgate.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {tenant.token}\r\ncontent-length: {50 * 1024 * 1024}\r\n\r\n".encode()
        + b'{"model": "gpt-4o-mini", "messages": ['
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 413"), head


async def _send_until_answered(url: str, token: str, path: str) -> tuple[bytes, int]:
    """Sends an endless chunked body, 4 KiB at a time, until the server answers; returns the
    answer's head and how many body bytes had been sent by then."""
    address = urlsplit(url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n".encode()
        + f"authorization: Bearer {token}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    )
    sent = 0
    try:
        while sent < 4 * 1024 * 1024:
            chunk = b'{"name": "' if sent == 0 else b"x" * 4096
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            sent += len(chunk)
            try:
                first = await asyncio.wait_for(reader.read(1), timeout=0.02)
            except TimeoutError:
                continue
            return first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10), sent
        raise AssertionError(f"{path}: no answer after {sent} bytes")
    finally:
        writer.close()


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/assistants", "/v1/threads", "/v1/responses"])
async def test_an_undeclared_oversize_body_is_cut_off(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette, path: str
) -> None:
    """Chunked, so no length to refuse up front: counted as it arrives and refused at the limit
    (64 KiB here), whether the route's handler reads the body itself or FastAPI does; what
    comes after is dropped unread for up to ``LINGER_BYTES``, so the client can read its 413."""
    before = len(mock_app.state.requests)
    async with Unchanged(engine):
        head, sent = await _send_until_answered(tollgate.url, tenant.token, path)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert sent < 64 * 1024 + LINGER_BYTES + 64 * 1024
    assert len(mock_app.state.requests) == before


NESTED = b"[" * 30_000 + b"]" * 30_000
NESTED_OBJECT = b'{"a":' * 12_000 + b"1" + b"}" * 12_000


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/embeddings", "/v1/assistants", "/v1/threads"])
@pytest.mark.parametrize("body", [NESTED, NESTED_OBJECT], ids=["arrays", "objects"])
async def test_deeply_nested_json(http: httpx.AsyncClient, engine: AsyncEngine, path: str, body: bytes) -> None:
    async with Unchanged(engine):
        assert_refused(await http.post(path, content=body, headers=JSON))


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/assistants", "/v1/threads", "/admin/teams"])
@pytest.mark.parametrize(
    "raw",
    [b'{"name": "\xff\xfe", "model": "gpt-4o-mini"}', b'{"name": "\xed\xa0\x80", "model": "gpt-4o-mini"}'],
    ids=["invalid-utf8", "utf8-encoded-surrogate"],
)
async def test_invalid_utf8(http: httpx.AsyncClient, admin: Admin, engine: AsyncEngine, path: str, raw: bytes) -> None:
    client = admin.http if path.startswith("/admin") else http
    async with Unchanged(engine):
        assert_refused(await client.post(path, content=raw, headers=JSON), 400)


UNSTORABLE = ["\ud800", "a\udfffb", "\x00", "nul\x00inside"]


def _escaped(value: Any) -> bytes:
    """JSON with the string escaped (\\ud800, \\u0000): valid JSON, but text PostgreSQL cannot store."""
    return json.dumps(value).encode()


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["lone-high", "lone-low", "nul", "nul-inside"])
async def test_unstorable_text_in_stored_objects(
    http: httpx.AsyncClient, admin: Admin, engine: AsyncEngine, bad: str
) -> None:
    bodies: list[tuple[httpx.AsyncClient, str, dict[str, Any]]] = [
        (http, "/v1/threads", {"messages": [{"role": "user", "content": bad}]}),
        (http, "/v1/threads", {"metadata": {"k": bad}}),
        (http, "/v1/assistants", {"model": "gpt-4o-mini", "instructions": bad}),
        (http, "/v1/assistants", {"model": "gpt-4o-mini", "name": "x", "metadata": {bad: "v"}}),
        (admin.http, "/admin/teams", {"name": f"team{bad}"}),
        (admin.http, "/admin/users", {"name": f"user{bad}"}),
    ]
    async with Unchanged(engine):
        for client, path, body in bodies:
            assert_refused(await client.post(path, content=_escaped(body), headers=JSON), 400)


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["lone-high", "lone-low", "nul", "nul-inside"])
async def test_unstorable_text_in_a_metered_call(
    http: httpx.AsyncClient, tenant: Tenant, engine: AsyncEngine, bad: str
) -> None:
    """The model name is what the ledger would store: refused before anything is written."""
    async with Unchanged(engine):
        body = {"model": f"gpt-4o-mini{bad}", "messages": [{"role": "user", "content": "hi"}]}
        assert_refused(await http.post("/v1/chat/completions", content=_escaped(body), headers=JSON))


@pytest.mark.parametrize(
    "path",
    [
        "/v1/threads/thread_%00",
        "/v1/assistants/asst_%00x",
        "/v1/files/file-%00",
        "/v1/responses/resp_%00",
        "/v1/conversations/conv_%00",
        "/v1/threads?after=%00",
        "/v1/assistants?before=%00abc",
        "/v1/files?purpose=%00",
        "/v1/models/gpt%00",
    ],
)
async def test_nul_bytes_in_ids_and_filters(http: httpx.AsyncClient, engine: AsyncEngine, path: str) -> None:
    async with Unchanged(engine):
        assert_refused(await http.get(path))


@pytest.mark.parametrize("path", ["/admin/users?team=%00", "/admin/keys?user=%00", "/admin/users/x%00"])
async def test_nul_bytes_in_admin_filters(admin: Admin, engine: AsyncEngine, path: str) -> None:
    async with Unchanged(engine):
        assert_refused(await admin.http.get(path))


async def test_ten_thousand_messages(
    roomy_http: httpx.AsyncClient, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    many = [{"role": "user", "content": f"m{i}"} for i in range(10_000)]
    async with Unchanged(engine):
        assert_refused(await roomy_http.post("/v1/threads", json={"messages": many}), 400)
    # A chat call may carry them: it is metered exactly once, from upstream's usage.
    response = await roomy_http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": many})
    assert response.status_code == 200, response.text[:300]
    [row] = await usage_rows(engine, tenant.key_id)
    assert row.status == "ok"
    assert row.prompt_tokens > 10_000


MEGABYTE = "x" * (1024 * 1024)


async def test_one_megabyte_strings(roomy_http: httpx.AsyncClient, engine: AsyncEngine) -> None:
    bodies = [
        ("/v1/assistants", {"model": "gpt-4o-mini", "instructions": MEGABYTE}),
        ("/v1/assistants", {"model": "gpt-4o-mini", "name": MEGABYTE}),
        ("/v1/threads", {"metadata": {"k": MEGABYTE}}),
        ("/v1/threads", {"metadata": {MEGABYTE: "v"}}),
        ("/v1/chat/completions", {"model": MEGABYTE, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/embeddings", {"model": MEGABYTE, "input": "hi"}),
    ]
    async with Unchanged(engine):
        for path, body in bodies:
            assert_refused(await roomy_http.post(path, json=body))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", -1),
        ("max_tokens", 0),
        ("max_tokens", 10**30),
        ("max_tokens", 2**63),
        ("max_completion_tokens", -5),
        ("max_completion_tokens", 10**20),
        ("n", -1),
        ("n", 0),
        ("n", 10**9),
        ("n", 129),
        ("max_tokens", 1.5),
        ("n", "2"),
    ],
)
async def test_negative_or_huge_counts(
    http: httpx.AsyncClient, engine: AsyncEngine, mock_app: Starlette, field: str, value: object
) -> None:
    before = len(mock_app.state.requests)
    async with Unchanged(engine):
        error = assert_refused(await http.post("/v1/chat/completions", json={**CHAT, field: value}), 400)
    assert error["param"] == field
    assert len(mock_app.state.requests) == before


@pytest.mark.parametrize(("field", "value"), [("max_tokens", 10**30), ("n", 10**9), ("best_of", 10**9)])
async def test_huge_counts_on_legacy_completions(
    http: httpx.AsyncClient, engine: AsyncEngine, field: str, value: int
) -> None:
    body = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", field: value}
    async with Unchanged(engine):
        assert_refused(await http.post("/v1/completions", json=body), 400)


@pytest.mark.parametrize(
    "model", ["no-such-model", "gpt-4o-mini ", "../gpt-4o-mini", "gpt-4o-mini\n", "' OR 1=1 --", "ft:x:y::z"]
)
async def test_unknown_model_names(
    http: httpx.AsyncClient, engine: AsyncEngine, mock_app: Starlette, model: str
) -> None:
    before = len(mock_app.state.requests)
    async with Unchanged(engine):
        assert_refused(await http.post("/v1/chat/completions", json={**CHAT, "model": model}))
        assert_refused(await http.post("/v1/embeddings", json={"model": model, "input": "x"}))
    assert len(mock_app.state.requests) == before


INJECTED = "ok\r\nset-cookie: evil=1\r\nx-injected: yes"


async def test_crlf_in_metadata_never_becomes_a_header(http: httpx.AsyncClient) -> None:
    created = await http.post("/v1/threads", json={"metadata": {"note": INJECTED}})
    assert created.status_code == 200, created.text
    thread_id = created.json()["id"]
    for response in (created, await http.get(f"/v1/threads/{thread_id}")):
        assert "set-cookie" not in response.headers
        assert "x-injected" not in response.headers
        assert response.json()["metadata"] == {"note": INJECTED}
    # The thread id header of a chat call is looked up, never echoed.
    response = await http.post("/v1/chat/completions", json=CHAT, headers={"x-tollgate-thread-id": "t\tx-injected: 1"})
    assert "x-injected" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/v1/files/..%2F..%2Fadmin%2Fkeys",
        "/v1/files/..%2Fuploads",
        "/v1/files/%2e%2e%2f%2e%2e%2fmodels",
        "/v1/responses/..%2F..%2Fmodels",
        "/v1/conversations/..%2Fconv_x%2Fitems",
        "/v1/threads/..%2F..%2Fadmin",
        "/v1/assistants/..%5C..%5Cadmin",
        "/v1/models/..%2F..%2Ffiles",
    ],
)
async def test_path_traversal_in_ids(
    http: httpx.AsyncClient, engine: AsyncEngine, mock_app: Starlette, path: str
) -> None:
    before = len(mock_app.state.requests)
    async with Unchanged(engine):
        assert_refused(await http.get(path), 404)
        if not path.startswith("/v1/models"):
            assert_refused(await http.delete(path))
    for request in mock_app.state.requests[before:]:
        assert ".." not in request.path, request.path


SQL = ["' OR '1'='1", "%", "_", "\\", "'; DROP TABLE users; --", '" OR ""="', "*", "1 UNION SELECT 1"]


@pytest.mark.parametrize("meta", SQL)
async def test_sql_metacharacters_in_every_filter(
    http: httpx.AsyncClient, admin: Admin, engine: AsyncEngine, meta: str
) -> None:
    other = await admin.tenant()
    async with other.http(str(http.base_url)) as theirs:
        assert (await theirs.post("/v1/threads", json={})).status_code == 200
        assert (await theirs.post("/v1/assistants", json={"model": "gpt-4o-mini"})).status_code == 200
    tenant_routes = [
        ("/v1/threads", {"after": meta}),
        ("/v1/threads", {"before": meta}),
        ("/v1/threads", {"order": meta}),
        ("/v1/threads", {"limit": meta}),
        ("/v1/assistants", {"after": meta, "order": "asc"}),
        ("/v1/assistants", {"before": meta}),
        ("/v1/conversations", {"after": meta}),
        ("/v1/files", {"purpose": meta}),
        ("/v1/files", {"after": meta}),
        ("/v1/threads/thread_x/messages", {"run_id": meta}),
    ]
    admin_routes = [
        ("/admin/users", {"team": meta}),
        ("/admin/keys", {"user": meta}),
        ("/admin/budgets", {"scope": meta}),
        ("/admin/budgets", {"scope": "user", "scope_id": meta}),
        ("/admin/rate-limits", {"scope": meta}),
        ("/admin/users/" + meta.replace("/", ""), {}),
    ]
    async with Unchanged(engine):
        for client, routes in ((http, tenant_routes), (admin.http, admin_routes)):
            for path, params in routes:
                response = await client.get(path, params=params)
                if response.status_code == 200:
                    # A filter that matched nothing, not one that matched everything.
                    assert response.json().get("data") == [], (path, params, response.text[:300])
                else:
                    assert_refused(response)


async def test_escaped_surrogate_pairs_are_text_like_any_other(http: httpx.AsyncClient) -> None:
    """Clients that escape everything (ensure_ascii) send an emoji as a pair: accepted everywhere."""
    emoji = "smile \U0001f600"
    body = {"messages": [{"role": "user", "content": emoji}]}
    created = await http.post("/v1/threads", content=_escaped(body), headers=JSON)
    assert created.status_code == 200, created.text
    messages = await http.get(f"/v1/threads/{created.json()['id']}/messages")
    assert messages.json()["data"][0]["content"][0]["text"]["value"] == emoji
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": emoji}]}
    assert b"\\ud83d\\ude00" in _escaped(chat)
    assert (await http.post("/v1/chat/completions", content=_escaped(chat), headers=JSON)).status_code == 200


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["lone-high", "lone-low", "nul", "nul-inside"])
async def test_unstorable_text_in_a_prompt(
    http: httpx.AsyncClient, engine: AsyncEngine, mock_app: Starlette, bad: str
) -> None:
    before = len(mock_app.state.requests)
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {bad}"}]}),
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi", bad: 1}]}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": [f"a{bad}"]}),
    ]
    async with Unchanged(engine):
        for path, body in bodies:
            error = assert_refused(await http.post(path, content=_escaped(body), headers=JSON), 400)
            assert error["code"] == "invalid_value"
    assert len(mock_app.state.requests) == before
