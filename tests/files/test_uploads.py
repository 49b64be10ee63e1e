"""The Uploads API through Tollgate with the official SDK: owned per user, completed into a file
owned by the same user."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.models import File, Upload
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant

PARTS = [b"a" * 1000, b"b" * 500, b"c" * 24]
WHOLE = b"".join(PARTS)


async def _upload_row(engine: AsyncEngine, upload_id: str) -> Upload | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(Upload.__table__).where(Upload.id == upload_id))).first()
    return Upload(**row._mapping) if row else None


async def test_upload_in_parts_becomes_the_callers_file(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    upload = await client.uploads.create(
        bytes=len(WHOLE), filename="big.jsonl", mime_type="text/jsonl", purpose="user_data"
    )
    assert (upload.status, upload.object, upload.bytes) == ("pending", "upload", len(WHOLE))
    part_ids = [(await client.uploads.parts.create(upload.id, data=part)).id for part in PARTS]
    done = await client.uploads.complete(upload.id, part_ids=part_ids, md5=hashlib.md5(WHOLE).hexdigest())  # noqa: S324
    assert done.status == "completed" and done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (len(WHOLE), "big.jsonl", "user_data")

    row = await _upload_row(engine, upload.id)
    assert row is not None and (row.user_id, row.status, row.file_id) == (tenant.user_id, "completed", done.file.id)
    async with engine.connect() as conn:
        owner = await conn.scalar(select(File.user_id).where(File.id == done.file.id))
    assert owner == tenant.user_id
    assert (await client.files.content(done.file.id)).content == WHOLE
    assert [f.id for f in (await client.files.list()).data] == [done.file.id]
    assert mock_app.state.files.uploads[upload.id].obj["status"] == "completed"


async def test_cancel_and_upstream_refusals(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    upload = await client.uploads.create(bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="batch")
    part = await client.uploads.parts.create(upload.id, data=b"12345")
    with pytest.raises(openai.BadRequestError):  # 5 bytes where 10 were announced
        await client.uploads.complete(upload.id, part_ids=[part.id])
    cancelled = await client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    row = await _upload_row(engine, upload.id)
    assert row is not None and row.status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        await client.uploads.parts.create(upload.id, data=b"more")


async def test_other_users_uploads_are_404_on_every_route(
    tollgate: LiveServer, admin: Admin, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    upload = await a.uploads.create(bytes=3, filename="a.txt", mime_type="text/plain", purpose="user_data")
    part = await a.uploads.parts.create(upload.id, data=b"abc")
    calls: list[Awaitable[object]] = [
        b.uploads.parts.create(upload.id, data=b"abc"),
        b.uploads.complete(upload.id, part_ids=[part.id]),
        b.uploads.cancel(upload.id),
        b.uploads.cancel("upload_doesnotexist"),
        b.uploads.parts.create("upload_doesnotexist", data=b"x"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError):
            await call
    stored = mock_app.state.files.uploads[upload.id]
    assert (stored.obj["status"], list(stored.parts)) == ("pending", [part.id])
    done = await a.uploads.complete(upload.id, part_ids=[part.id])
    assert done.file is not None
    with pytest.raises(openai.NotFoundError):  # and the file it became is Alice's alone
        await b.files.retrieve(done.file.id)


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "a", "purpose": "fine-tune", "bytes": 3},
        {"filename": "a", "purpose": "nope", "bytes": 3, "mime_type": "text/plain"},
        {"filename": "a", "purpose": "batch", "bytes": "3", "mime_type": "text/plain"},
    ],
)
async def test_bad_upload_requests_are_400_before_upstream(
    tollgate: LiveServer, tenant: Tenant, mock_app: Starlette, body: dict[str, object]
) -> None:
    before = len(mock_app.state.files.uploads)
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/uploads", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert len(mock_app.state.files.uploads) == before


async def test_a_part_must_be_a_data_form(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    upload = await client.uploads.create(bytes=3, filename="a", mime_type="text/plain", purpose="user_data")
    async with tenant.http(tollgate.url) as http:
        wrong_field = await http.post(f"/v1/uploads/{upload.id}/parts", files={"file": b"abc"})
        not_a_form = await http.post(f"/v1/uploads/{upload.id}/parts", content=b"abc")
    assert (wrong_field.status_code, wrong_field.json()["error"]["param"]) == (400, "file")
    assert not_a_form.status_code == 400
