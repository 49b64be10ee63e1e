"""Tollgate's overhead, measured: the same requests sent straight to a fast fake upstream
(nginx) and through Tollgate, side by side in one run.

    python bench/gateway.py                 # installs nginx and wrk (Debian) if missing
    python bench/gateway.py --duration 20 --concurrency 1 8 64

Tollgate runs on PostgreSQL with a real key and budget (every request authenticated, reserved,
settled and written to the ledger), as one worker pinned to CPU 0, with the token server it counts
through (which inherits that pinning: its CPU is Tollgate's too). wrk, nginx and PostgreSQL
share CPU 1 (PostgreSQL's processes are moved there for the run and moved back afterwards), so
Tollgate's core is its own. Prints requests per second and latency percentiles for both, and
the latency Tollgate adds, and the CPU time per request of the workers, the token server and
PostgreSQL. ``--workers N`` pins N workers to CPUs 0 to N-1 (on a 2-core machine, the second one
shares its CPU with wrk, nginx and PostgreSQL): the CPU per request then says whether a worker
costs more when it has company.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx

HERE = Path(__file__).resolve().parent
ADMIN_KEY = "tg-bench-admin-" + "0" * 32
SECRET = "bench-hmac-secret-" + "0" * 32
SCENARIOS = {
    "chat": ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}, ""),
    "chat-stream": (
        "/v1/chat/completions",
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True},
        "text/event-stream",
    ),
    "embeddings": ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello world"}, ""),
}


@dataclass
class Result:
    rps: float
    p50: float
    p90: float
    p99: float
    non2xx: int


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        print(f"installing {missing} from Debian packages", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        packages = ["nginx-light" if t == "nginx" else ("util-linux" if t == "taskset" else t) for t in missing]
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *packages],
            check=True,
            env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"},
        )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = (HERE / "nginx.conf").read_text().replace("__DIR__", str(workdir)).replace("__PORT__", str(port))
    (workdir / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(["taskset", "-c", "1", shutil.which("nginx") or "nginx", "-c", str(workdir / "nginx.conf")])
    wait_http(f"http://127.0.0.1:{port}/v1/models")
    return proc, port


@contextmanager
def postgres_on_cpu(cpu: int) -> Iterator[None]:
    """Moves PostgreSQL (postmaster, so new backends too, and every running process) to one CPU."""
    pids = [int(p) for p in subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()]
    before = {}
    for pid in pids:
        with suppress(OSError):
            before[pid] = os.sched_getaffinity(pid)
            os.sched_setaffinity(pid, {cpu})
    try:
        yield
    finally:
        for pid, cpus in before.items():
            with suppress(OSError):
                os.sched_setaffinity(pid, cpus)


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def tollgate_env(database_url: str, upstream_port: int, port: int) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "OPENAI_", "DATABASE_", "REDIS_"))}
    return keep | {
        "DATABASE_URL": database_url,
        "TOLLGATE_SECRET_KEY": SECRET,
        "TOLLGATE_ADMIN_KEY": ADMIN_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream_port}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "TOLLGATE_PORT": str(port),
        **{k[6:]: v for k, v in os.environ.items() if k.startswith("BENCH_")},
    }


def prepare_database(database_url: str, env: dict[str, str], other_budgets: int = 0) -> str:
    """A fresh database, migrated, with one user, a key and a large budget, beside
    ``other_budgets`` budgets of other keys, users and teams (a deployment's worth of them)."""
    admin_url = re.sub(r"/[^/]+$", "/postgres", database_url.replace("+asyncpg", ""))
    name = database_url.rsplit("/", 1)[1]
    for sql in (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"):
        subprocess.run(["psql", admin_url, "-qc", sql], check=True)
    tollgate = [sys.executable, "-m", "app.cli.main"]
    subprocess.run([*tollgate, "migrate"], check=True, env=env, cwd=HERE.parent, capture_output=True)
    subprocess.run([*tollgate, "users", "create", "bench"], check=True, env=env, cwd=HERE.parent, capture_output=True)
    created = subprocess.run(
        [*tollgate, "keys", "create", "--user", "bench", "--json"],
        check=True,
        env=env,
        cwd=HERE.parent,
        capture_output=True,
    )
    subprocess.run(
        [*tollgate, "budgets", "create", "--user", "bench", "--limit", "1000000", "--period", "monthly"],
        check=True,
        env=env,
        cwd=HERE.parent,
        capture_output=True,
    )
    if other_budgets:
        fill = (
            "INSERT INTO budgets (id, scope, scope_id, period, timezone, limit_micros, spent_micros, "
            "reserved_micros, period_start, updated_at, created_at) "
            "SELECT 'budget_other' || g, (ARRAY['key', 'user', 'team'])[g % 3 + 1], 'other_' || g, 'monthly', "
            "'UTC', 1000000, 0, 0, now(), now(), now() FROM generate_series(1, :n) AS g; ANALYZE budgets;"
        )
        dsn = database_url.replace("+asyncpg", "")
        subprocess.run(["psql", dsn, "-q", "-v", f"n={other_budgets:d}"], input=fill, text=True, check=True)
    return str(json.loads(created.stdout)["key"])


def wrk(url: str, body: Path, token: str, accept: str, concurrency: int, duration: int) -> Result:
    threads = min(concurrency, 2)
    env = os.environ | {"BENCH_BODY": str(body), "BENCH_TOKEN": token, "BENCH_ACCEPT": accept}
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(HERE / "post.lua"),
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    pct = {m[0]: _ms(m[1]) for m in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = int(re.search(r"BENCH_NON2XX (\d+)", out).group(1))  # type: ignore[union-attr]
    return Result(rps, pct["50"], pct["90"], pct["99"], non2xx)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid``: with one worker, uvicorn serves in the process it was started in."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024  # type: ignore[union-attr]


def worker_pids(pid: int) -> list[int]:
    """The processes that serve requests: ``pid`` itself with one worker, else uvicorn's children."""
    found = subprocess.run(["pgrep", "-P", str(pid), "-f", "spawn_main"], capture_output=True, text=True)
    return [int(child) for child in found.stdout.split()] or [pid]


def token_server_mb(pid: int) -> float:
    """Resident memory of the token server that ``tollgate serve`` (``pid``) runs for all its workers."""
    children = subprocess.run(["pgrep", "-P", str(pid), "-f", "app.kit.token_server"], capture_output=True, text=True)
    return sum(rss_mb(int(child)) for child in children.stdout.split())


def cpu_s(pid: int) -> float:
    """CPU time of ``pid``, all its threads (schedstat, in ns)."""
    total_ns = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):  # a thread that just ended
            total_ns += int((task / "schedstat").read_text().split()[0])
    return total_ns / 1e9


def postgres_cpu_s() -> float:
    """CPU time of every PostgreSQL process (all databases: the bench is its main user)."""
    pids = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True).stdout.split()
    total = 0.0
    for pid in pids:
        with suppress(OSError):  # a backend that just ended
            total += cpu_s(int(pid))
    return total


def token_server_cpu_s(pid: int) -> float:
    """CPU time of ``pid``'s token server."""
    children = subprocess.run(["pgrep", "-P", str(pid), "-f", "app.kit.token_server"], capture_output=True, text=True)
    return sum(cpu_s(int(child)) for child in children.stdout.split())


def ttfb_ms(port: int, path: str, body: bytes, token: str, n: int = 300) -> float:
    """Median time to the first byte of the body, one request at a time on one keep-alive connection."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    samples = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        for _ in range(n):
            started = time.perf_counter()
            sock.sendall(head + body)
            headers = _read_head(reader)
            first = reader.read(1)
            samples.append((time.perf_counter() - started) * 1000)
            if "content-length" in headers:
                reader.read(int(headers["content-length"]) - 1)
            else:
                _drain_chunked(reader, first)
    return statistics.median(samples)


def _read_head(reader: BinaryIO) -> dict[str, str]:
    reader.readline()  # status line
    headers = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def _drain_chunked(reader: BinaryIO, first: bytes) -> None:
    size_line = first + reader.readline()
    while (size := int(size_line.strip(), 16)) > 0:
        reader.read(size + 2)
        size_line = reader.readline()
    reader.readline()


def body_file(workdir: Path, name: str) -> Path:
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(SCENARIOS[name][1]))
    return path


def warm_up(args: argparse.Namespace, workdir: Path, port: int, token: str) -> None:
    """Every scenario once at the highest concurrency: tokenizer tables, pools and buffers are all
    in place before the first measurement and the first memory reading."""
    for name in args.scenarios:
        path, _, accept = SCENARIOS[name]
        wrk(f"http://127.0.0.1:{port}{path}", body_file(workdir, name), token, accept, max(args.concurrency), 2)


def measure(args: argparse.Namespace, r: Rig) -> None:
    workdir, upstream_port, port, token, gateway_pid = r.workdir, r.upstream_port, r.port, r.token, r.gateway.pid
    workers = worker_pids(gateway_pid)
    print(
        f"{'scenario':<12} {'conc':>4} | {'direct rps':>10} {'p50':>7} {'p90':>7} {'p99':>7} | "
        f"{'tollgate rps':>12} {'p50':>7} {'p90':>7} {'p99':>7} | {'added p50':>9} {'added p99':>9} {'rps ratio':>9} "
        f"{'cpu µs':>6} {'tok µs':>6} {'pg µs':>6}"
    )
    for name in args.scenarios:
        path, _, accept = SCENARIOS[name]
        body = body_file(workdir, name)
        for c in args.concurrency:
            direct = wrk(f"http://127.0.0.1:{upstream_port}{path}", body, "sk-bench", accept, c, args.duration)
            working, counting = sum(map(cpu_s, workers)), token_server_cpu_s(gateway_pid)
            storing = postgres_cpu_s()
            through = wrk(f"http://127.0.0.1:{port}{path}", body, token, accept, c, args.duration)
            working, counting = sum(map(cpu_s, workers)) - working, token_server_cpu_s(gateway_pid) - counting
            storing = postgres_cpu_s() - storing
            served = through.rps * args.duration
            if through.non2xx:
                print(f"!! {through.non2xx} non-2xx answers from Tollgate; see {workdir / 'tollgate.log'}")
            print(
                f"{name:<12} {c:>4} | {direct.rps:>10.0f} {direct.p50:>7.2f} {direct.p90:>7.2f} {direct.p99:>7.2f} | "
                f"{through.rps:>12.0f} {through.p50:>7.2f} {through.p90:>7.2f} {through.p99:>7.2f} | "
                f"{through.p50 - direct.p50:>9.2f} {through.p99 - direct.p99:>9.2f} {through.rps / direct.rps:>9.3f} "
                f"{working / served * 1e6:>6.0f} {counting / served * 1e6:>6.1f} {storing / served * 1e6:>6.0f}",
                flush=True,
            )
    print(
        "latencies in ms; 'added' = Tollgate minus direct at the same percentile; "
        "'cpu µs' = the worker's CPU per request, 'tok µs' = the token server's, 'pg µs' = PostgreSQL's"
    )


@dataclass
class Rig:
    workdir: Path
    upstream_port: int
    port: int
    token: str
    gateway: subprocess.Popen[bytes]


@contextmanager
def rig(
    database_url: str, prefix: str, shared_tokenizer: bool = True, other_budgets: int = 0, workers: int = 1
) -> Iterator[Rig]:
    """nginx as the upstream, a fresh database with a key and a budget, and Tollgate's workers
    pinned to CPUs 0 to workers - 1, answering; all stopped on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    nginx, upstream_port = start_nginx(workdir)
    try:
        port = free_port()
        env = tollgate_env(database_url, upstream_port, port)
        env["TOLLGATE_SHARED_TOKENIZER"] = str(shared_tokenizer).lower()
        token = prepare_database(database_url, env, other_budgets)
        command = [sys.executable, "-m", "app.cli.main", "serve", "--skip-migrations", "--workers", str(workers)]
        gateway = subprocess.Popen(
            ["taskset", "-c", f"0-{workers - 1}", *command],
            env=env,
            cwd=HERE.parent,
            stdout=(workdir / "tollgate.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz")
            yield Rig(workdir, upstream_port, port, token, gateway)
        finally:
            gateway.terminate()
            gateway.wait(10)
    finally:
        nginx.terminate()
        nginx.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/tollgate_bench")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument(
        "--tokenizer",
        choices=["shared", "in-worker"],
        default="shared",
        help="the token server all workers share (the default), or tiktoken's tables in the worker",
    )
    parser.add_argument(
        "--other-budgets", type=int, default=0, help="budgets of other keys, users and teams in the database"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="Tollgate's worker processes, pinned to CPUs 0 to workers - 1"
    )
    args = parser.parse_args()
    ensure_tools()
    # This process is a client too (time to first byte): keep it off Tollgate's core.
    os.sched_setaffinity(0, {1})
    with rig(args.database_url, "tollgate-bench-", args.tokenizer == "shared", args.other_budgets, args.workers) as r:
        print(
            f"# {time.strftime('%Y-%m-%d')}: Tollgate pinned to CPUs 0-{args.workers - 1} ({args.workers} workers, "
            f"tokenizer {args.tokenizer}); "
            f"wrk, nginx and PostgreSQL on CPU 1; {args.duration}s per cell; {args.other_budgets} other budgets",
            flush=True,
        )
        with postgres_on_cpu(1):
            stream_body = json.dumps(SCENARIOS["chat-stream"][1]).encode()
            warm_up(args, r.workdir, r.port, r.token)
            rss_start = max(map(rss_mb, worker_pids(r.gateway.pid)))
            measure(args, r)
            direct_ttfb = ttfb_ms(r.upstream_port, "/v1/chat/completions", stream_body, "sk-bench")
            tollgate_ttfb = ttfb_ms(r.port, "/v1/chat/completions", stream_body, r.token)
        print(
            f"streamed chat, time to first byte (median of 300, c=1): direct {direct_ttfb:.2f} ms, "
            f"Tollgate {tollgate_ttfb:.2f} ms, added {tollgate_ttfb - direct_ttfb:.2f} ms"
        )
        print(
            f"Tollgate worker resident memory (the largest worker): {rss_start:.0f} MB after warm-up, "
            f"{max(map(rss_mb, worker_pids(r.gateway.pid))):.0f} MB at "
            f"the end; the token server all workers share: {token_server_mb(r.gateway.pid):.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
