"""A 200 MiB file (by default) uploaded through Tollgate and downloaded back, with the memory of
the process that runs client, Tollgate and mock upstream printed: it stays at a few MiB.

    TIKTOKEN_CACHE_DIR=../shared/tiktoken python bench/files_memory.py --mib 200

Runs on a temporary SQLite database unless DATABASE_URL names another (already migrated or not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

import httpx
from alembic import command

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.cli.runtime import alembic_config
from app.main import create_app
from app.mock_upstream.server import MockConfig, create_mock_app
from tests.files.memory import upload_and_download
from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import ADMIN_KEY, UPSTREAM_KEY, Admin, make_settings


async def main(mib: int, database_url: str) -> None:
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "head")
    upstream = LiveServer(create_mock_app(MockConfig(api_key=UPSTREAM_KEY)))
    with upstream, LiveServer(create_app(make_settings(database_url, upstream.url))) as tollgate:
        headers = {"authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=tollgate.url, headers=headers, timeout=10) as http:
            tenant = await Admin(http).tenant()
        figures, intact = await upload_and_download(tollgate.url, tenant.token, mib * 1024 * 1024)
    print(figures.report())
    print("content intact:", intact)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp}/bench.db"
        asyncio.run(main(args.mib, url))
