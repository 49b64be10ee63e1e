"""Files through Tollgate with the official SDK: streamed to upstream, owned per user."""

from __future__ import annotations

from collections.abc import Awaitable

import httpx
import openai
import pytest
from openai.types import FilePurpose
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.models import File, UsageRecord
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin, Tenant

# A valid fine-tune file (fine-tune uploads are checked on the way in: see tests/fine_tuning).
JSONL = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 10


async def _file_rows(engine: AsyncEngine, user_id: str) -> list[File]:
    async with engine.connect() as conn:
        result = await conn.execute(select(File.__table__).where(File.user_id == user_id).order_by(File.created_at))
        return [File(**row._mapping) for row in result]


async def test_upload_retrieve_download_delete(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    created = await client.files.create(file=("train.jsonl", JSONL, "application/jsonl"), purpose="fine-tune")
    assert created.id.startswith("file-") and created.object == "file"
    assert (created.bytes, created.filename, created.purpose) == (len(JSONL), "train.jsonl", "fine-tune")
    assert mock_app.state.files.files[created.id].path.read_bytes() == JSONL

    [row] = await _file_rows(engine, tenant.user_id)
    assert (row.id, row.bytes, row.purpose, row.filename) == (created.id, len(JSONL), "fine-tune", "train.jsonl")

    assert (await client.files.retrieve(created.id)) == created
    assert (await client.files.content(created.id)).content == JSONL
    deleted = await client.files.delete(created.id)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    assert await _file_rows(engine, tenant.user_id) == []
    assert created.id not in mock_app.state.files.files
    with pytest.raises(openai.NotFoundError):
        await client.files.retrieve(created.id)
    # Files cost nothing upstream: no ledger rows.
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).where(UsageRecord.api_key_id == tenant.key_id)) == 0


async def test_expiry_is_passed_on(tollgate: LiveServer, tenant: Tenant) -> None:
    client = tenant.client(tollgate.url)
    created = await client.files.create(
        file=("b.jsonl", b"{}\n", "application/jsonl"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert created.expires_at == created.created_at + 7200
    [listed] = (await client.files.list()).data
    assert listed == created


async def test_lists_show_only_the_callers_files_with_pagination_and_purpose(
    tollgate: LiveServer, admin: Admin
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    purposes: list[FilePurpose] = ["fine-tune", "batch", "fine-tune", "assistants", "fine-tune"]
    ids = [(await a.files.create(file=(f"f{i}.jsonl", JSONL), purpose=p)).id for i, p in enumerate(purposes)]
    bobs = (await b.files.create(file=("bob.jsonl", JSONL), purpose="fine-tune")).id

    assert [f.id for f in (await a.files.list()).data] == ids[::-1]
    assert [f.id for f in (await b.files.list()).data] == [bobs]

    first = await a.files.list(limit=2, order="asc")
    assert ([f.id for f in first.data], first.has_more) == (ids[:2], True)
    walked = [f.id async for f in a.files.list(limit=2, order="asc")]  # the SDK follows `after`
    assert walked == ids
    tuned = await a.files.list(purpose="fine-tune")
    assert [f.id for f in tuned.data] == [ids[4], ids[2], ids[0]]
    assert (await a.files.list(purpose="vision")).data == []
    with pytest.raises(openai.BadRequestError):  # a cursor naming Bob's file is no way in
        await a.files.list(after=bobs)


async def test_other_users_files_are_404_on_every_route(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    alice, bob = await admin.tenant(), await admin.tenant()
    a, b = alice.client(tollgate.url), bob.client(tollgate.url)
    file = await a.files.create(file=("secret.txt", b"alice only"), purpose="user_data")
    calls: list[Awaitable[object]] = [
        b.files.retrieve(file.id),
        b.files.content(file.id),
        b.files.delete(file.id),
        b.files.retrieve("file-doesnotexist"),
        b.files.content("file-doesnotexist"),
        b.files.delete("file-doesnotexist"),
    ]
    for call in calls:
        with pytest.raises(openai.NotFoundError) as caught:
            await call
        assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert file.id in mock_app.state.files.files
    assert [r.id for r in await _file_rows(engine, alice.user_id)] == [file.id]
    assert (await a.files.content(file.id)).content == b"alice only"


def _form(boundary: str, *parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    ("content_type", "body", "param"),
    [
        ("application/json", b'{"purpose": "batch"}', None),
        ("multipart/form-data", _form("B", ("purpose", b"batch", None)), None),  # no boundary
        ("multipart/form-data; boundary=B", _form("B", ("purpose", b"batch", None)), "file"),
        ("multipart/form-data; boundary=B", _form("B", ("file", b"x", "a.txt")), "purpose"),
        ("multipart/form-data; boundary=B", _form("B", ("purpose", b"nope", None), ("file", b"x", "a")), "purpose"),
        ("multipart/form-data; boundary=B", _form("B", ("model", b"x", None), ("file", b"x", "a")), "model"),
        ("multipart/form-data; boundary=B", _form("B", ("purpose", b"batch", None), ("file", b"x", "a"))[:-8], None),
        ("multipart/form-data; boundary=B", b"--B\r\nno-colon-here\r\n\r\nx\r\n--B--\r\n", None),
    ],
)
async def test_bad_forms_are_400_and_keep_nothing(
    tollgate: LiveServer,
    tenant: Tenant,
    engine: AsyncEngine,
    mock_app: Starlette,
    content_type: str,
    body: bytes,
    param: str | None,
) -> None:
    before = set(mock_app.state.files.files)
    async with tenant.http(tollgate.url) as http:
        response = await http.post("/v1/files", content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert set(mock_app.state.files.files) == before
    assert await _file_rows(engine, tenant.user_id) == []


async def test_files_need_a_key(tollgate: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=tollgate.url) as http:
        assert (await http.get("/v1/files")).status_code == 401
        assert (await http.post("/v1/files", files={"file": b"x"}, data={"purpose": "batch"})).status_code == 401
