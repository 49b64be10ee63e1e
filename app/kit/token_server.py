"""One process that holds tiktoken's tables for every worker of a host.

tiktoken keeps an encoding's merge table in Rust hash maps, three copies of every token: 42 MB of
resident memory for o200k_base and 21 MB for cl100k_base, in each process that loads them. Exact
prompt counts are needed on every metered request, so without this each worker carries 63 MB of
tables; with it, each worker carries none and this process carries them once.

    python -m app.kit.token_server SOCKET_PATH --parent PID

The wire format is as small as the job: a request is ``<HI`` (encoding name length, number of
texts), the name, ``<nI`` UTF-8 lengths, then the texts; the answer is ``<nI`` token counts.
Texts cross as UTF-8 with lone surrogates passed through, so a prompt tiktoken could count in the
worker counts the same here. Every connection gets its own thread: tiktoken's encoder drops the
GIL, so workers do not wait for one another.

Only modules this process needs are imported: it must stay small.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

HEADER = struct.Struct("<HI")
MAX_NAME_BYTES = 64
# A body Tollgate accepts is at most a few tens of MB of text; this only stops a garbled frame
# from making the server allocate without bound.
MAX_FRAME_BYTES = 1 << 31


def pack_request(encoding: str, texts: Sequence[str]) -> bytes:
    name = encoding.encode()
    data = [text.encode("utf-8", "surrogatepass") for text in texts]
    lengths = struct.pack(f"<{len(data)}I", *map(len, data))
    return b"".join((HEADER.pack(len(name), len(data)), name, lengths, *data))


def unpack_counts(payload: bytes, n: int) -> list[int]:
    return list(struct.unpack(f"<{n}I", payload))


class _Encodings:
    """tiktoken encodings by name, loaded on first use, without the Python copy of the merge
    table that only pickling reads (app.kit.tokens explains it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        encoding = self._loaded.get(name)
        if encoding is None:
            with self._lock:
                encoding = self._loaded.get(name)
                if encoding is None:
                    from app.kit.tokens import load_encoding  # tiktoken, imported once it is needed

                    encoding = self._loaded[name] = load_encoding(name)
        return encoding


class Garbled(Exception):
    """Not a client of ours: the connection is dropped rather than guessed at."""


def take_frame(buffer: bytearray) -> tuple[str, list[str]] | None:
    """The first whole request in ``buffer``, removed from it; None until one has arrived."""
    if len(buffer) < HEADER.size:
        return None
    name_len, n = HEADER.unpack_from(buffer)
    if name_len > MAX_NAME_BYTES or 4 * n > MAX_FRAME_BYTES:
        raise Garbled
    start = HEADER.size + name_len + 4 * n
    if len(buffer) < start:
        return None
    lengths = struct.unpack_from(f"<{n}I", buffer, HEADER.size + name_len)
    end = start + sum(lengths)
    if end - start > MAX_FRAME_BYTES:
        raise Garbled
    if len(buffer) < end:
        return None
    name = bytes(buffer[HEADER.size : HEADER.size + name_len]).decode()
    texts = []
    for length in lengths:
        texts.append(bytes(buffer[start : start + length]).decode("utf-8", "surrogatepass"))
        start += length
    del buffer[:end]
    return name, texts


class _Handler(socketserver.BaseRequestHandler):
    """Answers every whole request that has arrived in one write: a worker that sent several
    before this thread woke gets all their answers in one read."""

    server: _Server

    def handle(self) -> None:
        buffer = bytearray()
        try:
            while chunk := self.request.recv(1 << 16):
                buffer += chunk
                answers = []
                while (frame := take_frame(buffer)) is not None:
                    encoding = self.server.encodings.get(frame[0])
                    counts = [len(encoding.encode(text, disallowed_special=())) for text in frame[1]]
                    answers.append(struct.pack(f"<{len(counts)}I", *counts))
                if answers:
                    self.request.sendall(b"".join(answers))
        except (Garbled, UnicodeDecodeError, ValueError):
            return  # an unknown encoding name or a garbled frame: not a client of ours


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, preload: Sequence[str]) -> None:
        self.encodings = _Encodings()
        for name in preload:
            self.encodings.get(name)
        super().__init__(path, _Handler)


def _exit_with(parent: int, path: str) -> None:
    """A server whose ``tollgate serve`` is gone goes too, and takes its socket and the private
    directory that holds it: uvicorn ends on SIGTERM by raising it again once it has shut down,
    so ``serve`` gets no chance to clean up after itself."""
    while os.getppid() == parent:
        time.sleep(1.0)
    with contextlib.suppress(OSError):
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Counts tokens for Tollgate's workers.")
    parser.add_argument("socket")
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--preload", nargs="*", default=["o200k_base", "cl100k_base"])
    args = parser.parse_args(argv)
    _yield_to_workers()
    if args.parent is not None:
        threading.Thread(target=_exit_with, args=(args.parent, args.socket), daemon=True).start()
    # A socket file left by a server that died is in the way of its successor.
    if os.path.exists(args.socket) and _stale(args.socket):
        os.unlink(args.socket)
    with _Server(args.socket, args.preload) as server:
        server.serve_forever()


def _yield_to_workers() -> None:
    """SCHED_BATCH: a worker's request wakes this process without preempting the worker. The
    worker goes on with its other requests, and this process counts when the worker waits, for
    all the requests queued by then in one go, instead of two context switches per request on
    a shared core. It keeps its fair share of CPU; threads started later inherit the policy."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def _stale(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return True
    return False


if __name__ == "__main__":
    main()
