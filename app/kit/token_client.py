"""A worker's side of the token server (app.kit.token_server).

Two ways to ask. ``acount``, for the metered routes, is awaited and pipelined on one connection
per event loop: the worker serves its other requests while the server counts. ``count``, for
everything else (batches, runs, a stream that ended without usage), is a blocking round trip on
the calling thread's own connection, as counting in process blocks for the encoding itself; a
count in a worker thread never interleaves with another thread's.

When the server cannot answer, the caller counts in process instead (same numbers, more
memory), and the server is asked again after a pause: money is never metered on a guess.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence

from app.kit.token_server import pack_request, unpack_counts

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5.0


class TokenServerClient:
    def __init__(self, path: str, timeout_s: float = 30.0) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._retry_at = 0.0
        # Tests run many event loops in one process; a worker has one.
        self._pipelines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pipeline] = weakref.WeakKeyDictionary()
        self._connecting: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[_Pipeline]] = (
            weakref.WeakKeyDictionary()
        )

    def count(self, encoding: str, texts: Sequence[str]) -> list[int] | None:
        """Token counts of ``texts``, or None if the server could not give them."""
        if not texts:
            return []
        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        try:
            sock = self._socket()
            sock.sendall(pack_request(encoding, texts))
            counts = unpack_counts(_read_exactly(sock, 4 * len(texts)), len(texts))
        except OSError as exc:
            self._drop()
            self._failed(exc)
            return None
        self._retry_at = 0.0
        return counts

    async def acount(self, encoding: str, texts: Sequence[str]) -> list[int] | None:
        """As ``count``, without blocking the event loop: for the metered routes' estimates."""
        if not texts:
            return []
        if self._retry_at and time.monotonic() < self._retry_at:
            return None
        loop = asyncio.get_running_loop()
        try:
            pipeline = self._pipelines.get(loop)
            if pipeline is None or pipeline.lost:
                pipeline = await self._reconnect(loop)
            counts = await pipeline.count(pack_request(encoding, texts), len(texts))
        except OSError as exc:
            self._failed(exc)
            return None
        self._retry_at = 0.0
        return counts

    def _failed(self, exc: OSError) -> None:
        self._retry_at = time.monotonic() + RETRY_AFTER_S
        log.warning("token server unavailable, counting in process", extra={"error": str(exc)})

    async def _reconnect(self, loop: asyncio.AbstractEventLoop) -> _Pipeline:
        """One connection attempt per loop, however many requests are waiting for it."""
        connecting = self._connecting.get(loop)
        if connecting is None:
            connecting = self._connecting[loop] = loop.create_task(self._connect(loop))
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done():
                self._connecting.pop(loop, None)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Pipeline:
        _, pipeline = await loop.create_unix_connection(lambda: _Pipeline(self.timeout_s), self.path)
        self._pipelines[loop] = pipeline
        return pipeline

    def close(self) -> None:
        self._drop()
        for pipeline in self._pipelines.values():
            if pipeline.transport is not None:
                pipeline.transport.close()
        self._pipelines.clear()

    def _socket(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_s)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                raise
            self._local.sock = sock
        return sock

    def _drop(self) -> None:
        # A half-read answer would be taken for the next one's: the connection goes with it.
        sock: socket.socket | None = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise ConnectionResetError("token server closed the connection")
        got += n
    return bytes(buffer)


class _Pipeline(asyncio.Protocol):
    """One connection per event loop, requests pipelined. The frames that one turn of the loop
    produces go out in one write, and the server answers all it has received in one write, so
    under load the processes wake each other once per batch rather than once per request (a
    wake-up across cores costs tens of microseconds on a virtual machine). The server answers a
    connection's frames in order, so the answers are matched to the waiters in order."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._buffer = bytearray()
        self._waiting: deque[tuple[int, float, asyncio.Future[list[int]]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._waiting and len(self._buffer) >= 4 * self._waiting[0][0]:
            n, _, future = self._waiting.popleft()
            counts = unpack_counts(bytes(self._buffer[: 4 * n]), n)
            del self._buffer[: 4 * n]
            if not future.done():  # its request was cancelled; the answer is still consumed
                future.set_result(counts)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        while self._waiting:
            future = self._waiting.popleft()[2]
            if not future.done():
                future.set_exception(ConnectionResetError("token server connection lost"))

    async def count(self, frame: bytes, n: int) -> list[int]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[int]] = loop.create_future()
        self._waiting.append((n, loop.time(), future))
        if not self._outbox:
            loop.call_soon(self._flush)
        self._outbox.append(frame)
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self.timeout_s, self._check)
        return await future

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if self.transport is not None and not self.lost:  # lost: its waiters have been failed
            self.transport.write(b"".join(frames))

    def _check(self) -> None:
        """A server that stopped answering: the connection goes, and its waiters count in process."""
        self._timer = None
        if not self._waiting:
            return
        due = self._waiting[0][1] + self.timeout_s
        loop = asyncio.get_running_loop()
        if loop.time() >= due:
            assert self.transport is not None
            self.transport.abort()
        else:
            self._timer = loop.call_at(due, self._check)
