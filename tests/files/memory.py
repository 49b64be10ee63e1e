"""Sends a large file through Tollgate and back while measuring this process's memory.

Tollgate and the mock upstream both run in this process (LiveServer threads), so the figures
cover all three parties: the client, Tollgate and the upstream. The file is made on the fly from
one reused 1 MiB block, so the client holds no copy of it either.
"""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

BLOCK = 1024 * 1024
_BOUNDARY = "tollgate-memory-test"


@dataclass(frozen=True)
class Figures:
    size: int
    file_id: str
    upload_s: float
    download_s: float
    upload_peak: int  # bytes, tracemalloc's peak of Python allocations during the upload
    download_peak: int
    rss_peak_growth: int | None  # bytes, peak resident size over the size before; None without /proc

    def report(self) -> str:
        mib = 1024 * 1024
        rss = f"{self.rss_peak_growth / mib:.1f} MiB" if self.rss_peak_growth is not None else "n/a"
        return (
            f"{self.size / mib:.0f} MiB file: upload {self.upload_s:.1f} s,"
            f" peak traced {self.upload_peak / mib:.1f} MiB;"
            f" download {self.download_s:.1f} s, peak traced {self.download_peak / mib:.1f} MiB;"
            f" peak RSS growth {rss}"
        )


def _status_kib(field: str) -> int | None:
    with suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_rss_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux, /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _form(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    yield (
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        f'--{_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block = os.urandom(BLOCK)
    for _ in range(size // BLOCK):
        digest.update(block)
        yield block
    yield f"\r\n--{_BOUNDARY}--\r\n".encode()


async def upload_and_download(base_url: str, token: str, size: int) -> tuple[Figures, bool]:
    """The figures, and whether the bytes that came back are the bytes that went up."""
    headers = {"authorization": f"Bearer {token}"}
    sent, received = hashlib.sha256(), hashlib.sha256()
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as http:
        rss_before = _status_kib("VmRSS") if _reset_rss_peak() else None
        tracemalloc.start()
        try:
            started = time.perf_counter()
            content_type = f"multipart/form-data; boundary={_BOUNDARY}"
            response = await http.post("/v1/files", content=_form(size, sent), headers={"content-type": content_type})
            upload_s = time.perf_counter() - started
            assert response.status_code == 200, response.text
            file_id = response.json()["id"]
            upload_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            started, count = time.perf_counter(), 0
            async with http.stream("GET", f"/v1/files/{file_id}/content") as download:
                assert download.status_code == 200
                async for chunk in download.aiter_raw():
                    received.update(chunk)
                    count += len(chunk)
            download_s = time.perf_counter() - started
            download_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        rss_peak = _status_kib("VmHWM")
        growth = (rss_peak - rss_before) * 1024 if rss_before is not None and rss_peak is not None else None
    figures = Figures(size, file_id, upload_s, download_s, upload_peak, download_peak, growth)
    return figures, count == size and sent.digest() == received.digest()
