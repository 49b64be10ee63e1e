"""Fine-tune files are checked on the way in: a bad one is refused with its first bad line, and
neither upstream nor Tollgate keeps anything of it."""

from __future__ import annotations

import hashlib

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.models import File, Upload
from tests.fine_tuning.data import good_file, tokens_of
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Tenant

BAD_ROLE = good_file(12).replace(b'"role": "user"', b'"role": "robot"', 1)
BAD_ROLE_MESSAGE = (
    "Invalid fine-tuning file, line 1: message 2 has the role 'robot', not one of system, developer, user, "
    "assistant, tool, function (unrecognized_role)."
)


async def _rows(engine: AsyncEngine, user_id: str) -> list[File]:
    async with engine.connect() as conn:
        result = await conn.execute(select(File.__table__).where(File.user_id == user_id))
        return [File(**row._mapping) for row in result]


async def test_a_good_file_is_counted_on_its_row(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    created = await client.files.create(file=("train.jsonl", good_file(12)), purpose="fine-tune")
    [row] = await _rows(engine, tenant.user_id)
    assert (row.id, row.tune_examples, row.tune_tokens) == (created.id, 12, tokens_of(12))


@pytest.mark.parametrize("purpose_first", [True, False])
async def test_a_bad_file_is_refused_and_nothing_is_stored(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette, purpose_first: bool
) -> None:
    before = set(mock_app.state.files.files)
    purpose = b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
    file = b'--B\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n' + BAD_ROLE + b"\r\n"
    body = (purpose + file if purpose_first else file + purpose) + b"--B--\r\n"
    async with tenant.http(tollgate.url) as http:
        response = await http.post(
            "/v1/files", content=body, headers={"content-type": "multipart/form-data; boundary=B"}
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": BAD_ROLE_MESSAGE,
            "type": "invalid_request_error",
            "param": "file",
            "code": "unrecognized_role",
        }
    }
    assert set(mock_app.state.files.files) == before
    assert await _rows(engine, tenant.user_id) == []


async def test_other_purposes_are_not_checked(tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine) -> None:
    client = tenant.client(tollgate.url)
    await client.files.create(file=("notes.txt", b"not json at all"), purpose="user_data")
    [row] = await _rows(engine, tenant.user_id)
    assert row.tune_examples is None


async def test_an_upload_is_checked_when_complete(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    client = tenant.client(tollgate.url)
    for data, good in ((good_file(12), True), (BAD_ROLE, False)):
        upload = await client.uploads.create(
            bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune"
        )
        part = await client.uploads.parts.create(upload.id, data=data)
        before = set(mock_app.state.files.files)
        if good:
            done = await client.uploads.complete(upload.id, part_ids=[part.id], md5=hashlib.md5(data).hexdigest())  # noqa: S324
            assert done.file is not None
            [row] = await _rows(engine, tenant.user_id)
            assert (row.id, row.tune_examples, row.tune_tokens) == (done.file.id, 12, tokens_of(12))
            continue
        with pytest.raises(openai.BadRequestError) as caught:
            await client.uploads.complete(upload.id, part_ids=[part.id])
        assert caught.value.body["message"] == BAD_ROLE_MESSAGE  # type: ignore[index]
        assert set(mock_app.state.files.files) == before  # deleted upstream at once
        assert len(await _rows(engine, tenant.user_id)) == 1
        async with engine.connect() as conn:
            state = (await conn.execute(select(Upload.status, Upload.file_id).where(Upload.id == upload.id))).one()
        assert tuple(state) == ("completed", None)


async def test_a_large_file_is_checked_as_it_streams(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine, mock_app: Starlette
) -> None:
    """Thousands of lines arrive in many chunks (checked off the event loop); the verdict is the
    same as for a small file, and a bad line deep inside still stops the upload."""
    client = tenant.client(tollgate.url)
    created = await client.files.create(file=("big.jsonl", good_file(3000)), purpose="fine-tune")
    [row] = await _rows(engine, tenant.user_id)
    assert (row.id, row.tune_examples, row.tune_tokens) == (created.id, 3000, tokens_of(3000))

    lines = good_file(3000).splitlines(keepends=True)
    lines[2499] = b'{"messages": []}\n'
    before = set(mock_app.state.files.files)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.files.create(file=("bad.jsonl", b"".join(lines)), purpose="fine-tune")
    assert caught.value.body["message"] == (  # type: ignore[index]
        "Invalid fine-tuning file, line 2500: an example needs a non-empty 'messages' list (missing_messages_list)."
    )
    assert set(mock_app.state.files.files) == before
    assert len(await _rows(engine, tenant.user_id)) == 1
