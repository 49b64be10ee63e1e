"""Memory, descriptors and connections over a long run: mixed traffic (chat, streamed chat,
embeddings) through one Tollgate worker, plus clients that hang up mid-request.

    python bench/soak.py --requests 1000000     # about 20 minutes on a 2-core machine

Same setup as bench/gateway.py (nginx upstream, PostgreSQL, a real key and budget, Tollgate
pinned to CPU 0). Prints resident memory, open file descriptors and the gateway's PostgreSQL
connections after warm-up (the first tenth of the requests) and at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time

from gateway import HERE, postgres_on_cpu, rig, rss_mb, token_server_mb

DISCONNECT_BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}],"stream":true}'


def wrk_requests(port: int, token: str, duration_s: int, connections: int) -> tuple[int, int]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration_s}s",
            "-s",
            str(HERE / "mixed.lua"),
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=os.environ | {"BENCH_TOKEN": token},
    ).stdout
    done = int(re.search(r"BENCH_REQUESTS (\d+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(re.search(r"BENCH_NON2XX (\d+)", out).group(1))  # type: ignore[union-attr]
    return done, non2xx


def hang_ups(port: int, token: str, stop: threading.Event, counter: list[int]) -> None:
    """Streams abandoned after the first bytes, or before the answer: the cleanup paths."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(DISCONNECT_BODY)}\r\n\r\n"
    ).encode()
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + DISCONNECT_BODY)
            if counter[0] % 2:
                sock.recv(64)
        counter[0] += 1
        time.sleep(0.02)


def snapshot(pid: int, database: str) -> str:
    """With one worker, uvicorn serves in the process it was started as."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    connections = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-At", "-v", f"db={database}"],
        input="SELECT count(*) FROM pg_stat_activity WHERE datname = :'db';",
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (
        f"rss {rss_mb(pid):.0f} MB (token server {token_server_mb(pid):.0f} MB), open fds {fds}, "
        f"PostgreSQL connections {connections}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/tollgate_bench")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})  # the hang-up client stays off Tollgate's core
    database = args.database_url.rsplit("/", 1)[1]
    stop, hung_up = threading.Event(), [0]
    with rig(args.database_url, "tollgate-soak-") as r, postgres_on_cpu(1):
        threading.Thread(target=hang_ups, args=(r.port, r.token, stop, hung_up), daemon=True).start()
        try:
            total, errors, rate = 0, 0, 1000.0
            while total < args.requests // 10:
                done, bad = wrk_requests(r.port, r.token, 10, args.connections)
                total, errors, rate = total + done, errors + bad, done / 10
            print(f"after warm-up ({total:,} requests, {rate:.0f}/s): {snapshot(r.gateway.pid, database)}", flush=True)
            while total < args.requests:
                chunk = max(10, min(300, int((args.requests - total) / rate) + 1))
                done, bad = wrk_requests(r.port, r.token, chunk, args.connections)
                total, errors = total + done, errors + bad
                print(f"  {total:,} requests: {snapshot(r.gateway.pid, database)}", flush=True)
        finally:
            stop.set()
        time.sleep(1)
        print(
            f"at the end ({total:,} requests, {errors} non-2xx, {hung_up[0]:,} hang-ups): "
            f"{snapshot(r.gateway.pid, database)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
