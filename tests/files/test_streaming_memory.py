"""A file far larger than anything Tollgate should hold goes up and comes back while the memory
of the whole process (client, Tollgate and mock upstream) stays a small fraction of its size.
``bench/files_memory.py`` runs the same outside pytest and prints the figures."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import File
from tests.files.memory import upload_and_download
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import Tenant

SIZE = 200 * 1024 * 1024
# Generous against the ~6 MiB actually used, and an eighth of the file: holding it would fail.
MAX_GROWTH = SIZE // 8


async def test_a_large_file_streams_through_in_bounded_memory(
    tollgate: LiveServer, tenant: Tenant, engine: AsyncEngine
) -> None:
    figures, intact = await upload_and_download(tollgate.url, tenant.token, SIZE)
    print(figures.report())
    assert intact
    assert figures.upload_peak < MAX_GROWTH, figures.report()
    assert figures.download_peak < MAX_GROWTH, figures.report()
    if figures.rss_peak_growth is not None:
        assert figures.rss_peak_growth < MAX_GROWTH, figures.report()
    async with engine.connect() as conn:
        assert await conn.scalar(select(File.bytes).where(File.id == figures.file_id)) == SIZE
    await tenant.client(tollgate.url).files.delete(figures.file_id)  # frees the mock's disk
