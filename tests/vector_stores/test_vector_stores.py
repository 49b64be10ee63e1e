"""Vector stores, their files and file batches, and search through Tollgate with the official
SDK: owned per user, every id route owner-checked, every file id the caller's own."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.models import VectorStore
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant, usage_rows

NOTES = b"Tollgate meters every call. The reaper charges expired leases."


async def _file(client: openai.AsyncOpenAI, content: bytes = NOTES, name: str = "notes.txt") -> str:
    return (await client.files.create(file=(name, content), purpose="assistants")).id


async def _store_rows(engine: AsyncEngine, user_id: str) -> list[VectorStore]:
    async with engine.connect() as conn:
        result = await conn.execute(select(VectorStore.__table__).where(VectorStore.user_id == user_id))
        return [VectorStore(**row._mapping) for row in result]


def _mock_stores(mock_app: Starlette) -> dict[str, object]:
    stores: dict[str, object] = getattr(mock_app.state, "vector_stores", {})
    return stores


async def test_store_lifecycle_files_batches_and_search(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    first, second, third = await _file(client), await _file(client, b"second file"), await _file(client, b"third")
    store = await client.vector_stores.create(name="docs", file_ids=[first], metadata={"team": "core"})
    assert (store.name, store.metadata, store.file_counts.total, store.usage_bytes) == (
        "docs",
        {"team": "core"},
        1,
        len(NOTES),
    )
    [row] = await _store_rows(engine, tenant.user_id)
    assert (row.id, row.api_key_id, row.usage_bytes) == (store.id, tenant.key_id, len(NOTES))

    assert (await client.vector_stores.retrieve(store.id)).id == store.id
    renamed = await client.vector_stores.update(store.id, name="handbook")
    assert renamed.name == "handbook"
    [listed] = (await client.vector_stores.list()).data
    assert (listed.id, listed.name) == (store.id, "handbook")  # the list shows what upstream last said

    attached = await client.vector_stores.files.create(
        vector_store_id=store.id, file_id=second, attributes={"kind": "memo"}
    )
    assert (attached.id, attached.attributes) == (second, {"kind": "memo"})
    assert {f.id for f in (await client.vector_stores.files.list(vector_store_id=store.id)).data} == {first, second}
    fetched = await client.vector_stores.files.retrieve(second, vector_store_id=store.id)
    assert fetched.vector_store_id == store.id
    updated = await client.vector_stores.files.update(second, vector_store_id=store.id, attributes={"kind": "faq"})
    assert updated.attributes == {"kind": "faq"}
    content = [c async for c in client.vector_stores.files.content(second, vector_store_id=store.id)]
    assert [c.text for c in content] == ["second file"]

    batch = await client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[third])
    assert (await client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)).id == batch.id
    batch_files = await client.vector_stores.file_batches.list_files(batch.id, vector_store_id=store.id)
    assert [f.id for f in batch_files.data] == [third]
    cancelled = await client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
    assert cancelled.status == "cancelled"

    results = [r async for r in client.vector_stores.search(store.id, query="reaper")]
    assert [r.file_id for r in results] == [first]

    deleted_file = await client.vector_stores.files.delete(second, vector_store_id=store.id)
    assert (deleted_file.id, deleted_file.deleted) == (second, True)
    deleted = await client.vector_stores.delete(store.id)
    assert (deleted.id, deleted.deleted) == (store.id, True)
    assert await _store_rows(engine, tenant.user_id) == []
    assert store.id not in _mock_stores(mock_app)
    with pytest.raises(openai.NotFoundError):
        await client.vector_stores.retrieve(store.id)
    # Nothing here is billed per call (storage is metered daily; see test_storage).
    assert await usage_rows(engine, tenant.key_id) == []


async def test_lists_show_only_the_callers_stores(tollgate: LiveServer, admin: Admin) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    ids = [(await a.vector_stores.create(name=f"a{i}")).id for i in range(3)]
    bobs = (await b.vector_stores.create(name="b")).id
    assert [s.id for s in (await a.vector_stores.list()).data] == ids[::-1]
    assert [s.id for s in (await b.vector_stores.list()).data] == [bobs]
    first = await a.vector_stores.list(limit=2, order="asc")
    assert ([s.id for s in first.data], first.has_more) == (ids[:2], True)
    assert [s.id async for s in a.vector_stores.list(limit=2, order="asc")] == ids
    with pytest.raises(openai.BadRequestError):
        await a.vector_stores.list(after=bobs)


async def test_another_users_store_and_files_are_404_on_every_route(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    alices_file = await _file(a)
    store = await a.vector_stores.create(name="alice", file_ids=[alices_file])
    batch = await a.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[alices_file])
    bobs_store = await b.vector_stores.create(name="bob")
    files, batches = b.vector_stores.files, b.vector_stores.file_batches
    calls: list[Awaitable[object]] = [
        b.vector_stores.retrieve(store.id),
        b.vector_stores.update(store.id, name="mine now"),
        b.vector_stores.delete(store.id),
        b.vector_stores.search(store.id, query="reaper"),
        files.create(vector_store_id=store.id, file_id=await _file(b)),
        files.list(vector_store_id=store.id),
        files.retrieve(alices_file, vector_store_id=store.id),
        files.update(alices_file, vector_store_id=store.id, attributes={"x": "y"}),
        files.delete(alices_file, vector_store_id=store.id),
        files.content(alices_file, vector_store_id=store.id),
        batches.create(vector_store_id=store.id, file_ids=[await _file(b)]),
        batches.retrieve(batch.id, vector_store_id=store.id),
        batches.cancel(batch.id, vector_store_id=store.id),
        batches.list_files(batch.id, vector_store_id=store.id),
        # Alice's file, named in Bob's own store: refused before anything is sent upstream.
        b.vector_stores.create(name="stolen", file_ids=[alices_file]),
        files.create(vector_store_id=bobs_store.id, file_id=alices_file),
        batches.create(vector_store_id=bobs_store.id, file_ids=[alices_file]),
        batches.create(vector_store_id=bobs_store.id, files=[{"file_id": alices_file}]),
        b.vector_stores.retrieve("vs_doesnotexist"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert [r.id for r in await _store_rows(engine, bob.user_id)] == [bobs_store.id]
    assert (await b.vector_stores.retrieve(bobs_store.id)).file_counts.total == 0
    still = await a.vector_stores.retrieve(store.id)
    assert (still.name, still.file_counts.total) == ("alice", 1)


async def test_bad_input_is_refused_and_writes_nothing(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    before = len(_mock_stores(mock_app))
    async with tenant.http(tollgate.url) as http:
        bodies: list[dict[str, Any]] = [{"file_ids": "file-abc"}, {"file_ids": [1, 2]}, {"files": [{"attributes": {}}]}]
        for body in bodies:
            response = await http.post("/v1/vector_stores", json=body)
            assert response.status_code == 400, response.text
            assert response.json()["error"]["type"] == "invalid_request_error"
        malformed = await http.post(
            "/v1/vector_stores", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400
    assert len(_mock_stores(mock_app)) == before
    assert await _store_rows(engine, tenant.user_id) == []
    store = await client.vector_stores.create(name="ok")
    async with tenant.http(tollgate.url) as http:
        missing = await http.post(f"/v1/vector_stores/{store.id}/files", json={"attributes": {}})
        assert (missing.status_code, missing.json()["error"]["param"]) == (400, "file_id")
    assert (await client.vector_stores.retrieve(store.id)).file_counts.total == 0


async def test_unauthenticated_calls_are_refused(tollgate: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        for method, path in (("GET", "/v1/vector_stores"), ("POST", "/v1/vector_stores"), ("GET", "/v1/batches")):
            assert (await http.request(method, path)).status_code == 401
