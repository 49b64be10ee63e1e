"""The token server that `tollgate serve` runs beside its workers (app/kit/token_server.py).

It lives in a private directory (mode 0700), so only this user's processes can reach it. If it
dies it is started again; meanwhile the workers count in process, so no request waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0  # a first start may download tiktoken's files
RESTART_PAUSE_S = 1.0


class _Supervisor:
    def __init__(self, path: str) -> None:
        self.path = path
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher = threading.Thread(target=self._watch, name="token-server", daemon=True)

    def start(self) -> bool:
        self._process = self._spawn()
        ready = _wait_ready(self.path, self._process)
        if ready:
            self._watcher.start()
        return ready

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            if self._process.poll() is None:
                self._process.kill()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Our own interpreter and module; the path is a directory this process made.
        command = [sys.executable, "-m", "app.kit.token_server", self.path, "--parent", str(os.getpid())]
        return subprocess.Popen(command)  # noqa: S603

    def _watch(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            log.error("token server exited, starting it again", extra={"exit_code": code})
            time.sleep(RESTART_PAUSE_S)
            if not self._stopping.is_set():
                self._process = self._spawn()


def _wait_ready(path: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
                return True
            except OSError:
                time.sleep(0.05)
    return False


@contextlib.contextmanager
def token_server(enabled: bool) -> Iterator[str | None]:
    """The socket of a running token server, or None: then each worker loads its own tables."""
    if not enabled:
        yield None
        return
    folder = tempfile.mkdtemp(prefix="tollgate-tokens-")
    supervisor = _Supervisor(os.path.join(folder, "tokens.sock"))
    try:
        if supervisor.start():
            yield supervisor.path
        else:
            log.warning("token server did not start; each worker counts tokens in process")
            yield None
    finally:
        supervisor.stop()
        shutil.rmtree(folder, ignore_errors=True)
