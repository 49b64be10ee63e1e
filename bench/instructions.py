"""Tollgate's CPU cost per request in instructions, counted by valgrind's callgrind.

    python bench/instructions.py                      # installs valgrind (Debian) if missing
    python bench/instructions.py --requests 1000 --scenarios chat

Wall-clock figures on a shared virtual machine move by 20 to 50% from one run to the next; an
instruction count moves by 1 or 2%. So a change to the hot path is judged here first, and in
bench/gateway.py for what it does to latency. Same setup as bench/gateway.py (nginx upstream,
PostgreSQL, a real key and budget); Tollgate runs under callgrind, which counts only while a
scenario's requests are sent (4 keep-alive clients unless told), after a warm-up that is not
counted.
The count is the worker's: the token server it counts prompts through runs natively beside it
(callgrind does not follow children); bench/gateway.py reports that server's CPU per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway import SCENARIOS, free_port, prepare_database, start_nginx, tollgate_env, wait_http


def ensure_valgrind() -> None:
    if shutil.which("callgrind_control") is None:
        print("installing valgrind from Debian packages", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "valgrind"], check=True, env=env)


def request_head(path: str, token: str, accept: str, length: int) -> bytes:
    accept_line = f"Accept: {accept}\r\n" if accept else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\n{accept_line}Content-Length: {length}\r\n\r\n"
    ).encode()


async def one_client(port: int, request: bytes, count: int) -> None:
    """Sequential requests on one keep-alive connection, each answer read to its end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(request)
        status = await reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"Tollgate answered {status!r}")
        headers = {}
        while (line := await reader.readline()) != b"\r\n":
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
            continue
        while size := int((await reader.readline()).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    writer.close()


def send(port: int, request: bytes, count: int, clients: int) -> None:
    async def run() -> None:
        await asyncio.gather(*(one_client(port, request, count // clients) for _ in range(clients)))

    asyncio.run(run())


def counted(pid: int, dump: Path, action: str) -> int:
    """Switches counting on or off; when off, dumps and returns the instructions counted."""
    subprocess.run(["callgrind_control", "-i", action, str(pid)], check=True, capture_output=True)
    if action == "on":
        return 0
    before = set(dump.parent.glob(dump.name + "*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    for _ in range(100):
        for path in set(dump.parent.glob(dump.name + "*")) - before:
            totals = [ln for ln in path.read_text().splitlines() if ln.startswith("totals:")]
            if totals:  # the last line of a dump: the file is complete
                return int(totals[0].split()[1])
        time.sleep(0.1)
    raise SystemExit("callgrind wrote no dump")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600, help="counted requests per scenario")
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/tollgate_bench")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--tokenizer", choices=["shared", "in-worker"], default="shared")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive clients sending at once")
    args = parser.parse_args()
    ensure_valgrind()
    workdir = Path(tempfile.mkdtemp(prefix="tollgate-instructions-"))
    nginx, upstream_port = start_nginx(workdir)
    port = free_port()
    env = tollgate_env(args.database_url, upstream_port, port)
    env["TOLLGATE_SHARED_TOKENIZER"] = str(args.tokenizer == "shared").lower()
    token = prepare_database(args.database_url, env)
    dump = workdir / "callgrind.out"
    command = [sys.executable, "-m", "app.cli.main", "serve", "--skip-migrations", "--workers", "1"]
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}"]
    log = (workdir / "tollgate.log").open("w")
    gateway = subprocess.Popen([*valgrind, *command], env=env, cwd=Path(__file__).parents[1], stdout=log, stderr=log)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout_s=300)
        print(
            f"# {time.strftime('%Y-%m-%d')}: instructions per request, {args.requests} requests per scenario, "
            f"{args.clients} clients, tokenizer {args.tokenizer}"
        )
        for name in args.scenarios:
            path, body, accept = SCENARIOS[name]
            raw = json.dumps(body).encode()
            request = request_head(path, token, accept, len(raw)) + raw
            send(port, request, 200, args.clients)  # warm-up, not counted
            counted(gateway.pid, dump, "on")
            send(port, request, args.requests, args.clients)
            total = counted(gateway.pid, dump, "off")
            print(f"{name:<12} {total / args.requests / 1e6:6.3f} M instructions per request", flush=True)
    finally:
        gateway.terminate()
        gateway.wait(60)
        nginx.terminate()
        nginx.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
