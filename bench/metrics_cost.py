"""What metrics cost per request, measured without the network: the same trivial ASGI app called
in a loop with and without Tollgate's metrics middleware, plus the hot-path recording calls a
metered request makes besides (two upstream waits, the model label, an open stream).

    python bench/metrics_cost.py                  # in-memory values (one worker)
    python bench/metrics_cost.py --multiprocess   # file-backed values (several workers)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from app.kit.timing import add_upstream_wait, set_request_model
from app.metrics.middleware import MetricsMiddleware
from app.metrics.service import OPEN_STREAMS


async def _app(scope: object, receive: object, send: object) -> None:
    assert callable(send)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def _metered_app(scope: object, receive: object, send: object) -> None:
    set_request_model("gpt-4o-mini")
    add_upstream_wait(time.perf_counter())
    add_upstream_wait(time.perf_counter())
    OPEN_STREAMS.inc()
    OPEN_STREAMS.dec()
    await _app(scope, receive, send)


async def _run(app: object, n: int) -> float:
    assert callable(app)

    class Route:
        path = "/v1/chat/completions"

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        scope = {"type": "http", "route": Route(), "state": {}}
        await app(scope, receive, send)
    return (time.perf_counter() - started) / n


def measure(n: int) -> None:
    loop = asyncio.new_event_loop()
    plain = wrapped = 0.0
    for _ in range(3):  # best of three, each way
        plain = min(plain or 1e9, loop.run_until_complete(_run(_app, n)))
        wrapped = min(wrapped or 1e9, loop.run_until_complete(_run(MetricsMiddleware(_metered_app), n)))
    mode = "file-backed (multiprocess)" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "in-memory"
    print(
        f"{mode}: bare app {plain * 1e6:.2f} us, with metrics {wrapped * 1e6:.2f} us, "
        f"metrics cost {(wrapped - plain) * 1e6:.2f} us per request"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--multiprocess", action="store_true")
    args = parser.parse_args()
    if args.multiprocess and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # The value class is chosen when prometheus-client is imported: measure in a fresh process.
        with tempfile.TemporaryDirectory() as path:
            env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": path}
            command = [sys.executable, __file__, "--requests", str(args.requests), "--multiprocess"]
            return subprocess.run(command, env=env, cwd=HERE.parent, check=False).returncode
    measure(args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
