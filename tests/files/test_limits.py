"""The upload size limit, enforced while the body streams: nothing is kept of a refused file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import openai
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from app.config import FileSettings, Settings
from app.kit.form_relay import FORM_OVERHEAD_BYTES
from app.main import create_app
from app.models import File
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Admin

LIMIT = 256 * 1024


@pytest.fixture(scope="module")
def small_tollgate(settings: Settings) -> Iterator[LiveServer]:
    limited = settings.model_copy(update={"files": FileSettings(max_upload_bytes=LIMIT, max_part_bytes=LIMIT)})
    with LiveServer(create_app(limited)) as server:
        yield server


async def _chunked(head: bytes, size: int, tail: bytes) -> AsyncIterator[bytes]:
    yield head
    block = b"x" * 16384
    for _ in range(size // len(block)):
        yield block
    yield tail


@pytest.mark.parametrize(
    ("size", "declared", "reaches_upstream"),
    [
        # A declared length past the limit and the form's allowance: refused before a byte is read.
        (LIMIT + FORM_OVERHEAD_BYTES, True, False),
        # Declared within the allowance, or chunked: cut off as soon as the file passes the limit.
        (LIMIT + 16384, True, True),
        (LIMIT + 16384, False, True),
    ],
)
async def test_too_large_is_413_and_nothing_is_kept(
    small_tollgate: LiveServer,
    admin: Admin,
    engine: AsyncEngine,
    mock_app: Starlette,
    size: int,
    declared: bool,
    reaches_upstream: bool,
) -> None:
    tenant = await admin.tenant()
    before, calls = set(mock_app.state.files.files), len(mock_app.state.requests)
    head = (
        b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n'
    )
    tail = b"\r\n--B--\r\n"
    headers = {"content-type": "multipart/form-data; boundary=B"}
    async with tenant.http(small_tollgate.url) as http:
        body = head + b"x" * size + tail if declared else _chunked(head, size, tail)
        response = await http.post("/v1/files", content=body, headers=headers)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert set(mock_app.state.files.files) == before
    if reaches_upstream:
        # The mock records a request from its own server thread, which may run after the client
        # has read its 413: a deadline, not a timing claim.
        for _ in range(500):
            if len(mock_app.state.requests) > calls:
                break
            await asyncio.sleep(0.01)
    assert (len(mock_app.state.requests) > calls) == reaches_upstream
    async with engine.connect() as conn:
        assert (await conn.execute(select(File.id).where(File.user_id == tenant.user_id))).all() == []


async def test_a_file_at_the_limit_is_accepted(small_tollgate: LiveServer, admin: Admin) -> None:
    client = (await admin.tenant()).client(small_tollgate.url)
    created = await client.files.create(file=("edge.bin", b"y" * LIMIT), purpose="user_data")
    assert created.bytes == LIMIT
    with pytest.raises(openai.APIStatusError) as caught:
        await client.files.create(file=("over.bin", b"y" * (LIMIT + 1)), purpose="user_data")
    assert caught.value.status_code == 413


async def test_a_client_that_leaves_mid_upload_leaves_nothing(
    tollgate: LiveServer, admin: Admin, engine: AsyncEngine, mock_app: Starlette
) -> None:
    tenant = await admin.tenant()
    store, calls = mock_app.state.files, len(mock_app.state.requests)
    before = set(store.dir.iterdir())

    async def leaving() -> AsyncIterator[bytes]:
        yield b'--B\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n' + b"x" * 262144
        await asyncio.sleep(0.3)
        raise RuntimeError("the client gives up")

    headers = {"content-type": "multipart/form-data; boundary=B"}
    async with tenant.http(tollgate.url) as http:
        with pytest.raises(RuntimeError):
            await http.post("/v1/files", content=leaving(), headers=headers)
    assert len(mock_app.state.requests) > calls  # the upload had reached upstream
    deadline = time.monotonic() + 5
    while set(store.dir.iterdir()) != before:  # and upstream dropped its partial file
        assert time.monotonic() < deadline, "the upstream upload was not aborted"
        await asyncio.sleep(0.02)
    async with engine.connect() as conn:
        assert (await conn.execute(select(File.id).where(File.user_id == tenant.user_id))).all() == []
    assert (await tenant.client(tollgate.url).files.list()).data == []
