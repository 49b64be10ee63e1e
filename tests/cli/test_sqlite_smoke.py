"""The zero-setup path a newcomer takes: ``tollgate serve`` on SQLite, the CLI, and the SDK."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.servers import UPSTREAM_KEY

pytestmark = pytest.mark.sqlite
TOLLGATE = [str(Path(sys.executable).with_name("tollgate"))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path, mock_upstream: LiveServer) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TOLLGATE_", "DATABASE_", "OPENAI_"))}
    return clean | {
        "OPENAI_BASE_URL": mock_upstream.url + "/v1",
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "TOLLGATE_PORT": str(_free_port()),
        "TOLLGATE_LOG_JSON": "false",
    }


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> object:
    done = subprocess.run([*TOLLGATE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class Served:
    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{env['TOLLGATE_PORT']}"
        self.log = tmp_path / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen([*TOLLGATE, "serve"], cwd=tmp_path, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(self.log.read_text())

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(10)
        return self.log.read_text()


@pytest.fixture
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[Served]:
    server = Served(tmp_path, env)
    yield server
    server.stop()


def test_serve_migrates_prints_admin_key_once_and_meters_chat(
    tmp_path: Path, env: dict[str, str], served: Served
) -> None:
    assert (tmp_path / ".tollgate" / "tollgate.db").exists()
    assert oct((tmp_path / ".tollgate" / "secret.key").stat().st_mode & 0o777) == "0o600"
    log = served.log.read_text()
    admin_key = log.split("store it now):", 1)[1].split()[0]
    assert admin_key.startswith("tg-")

    user = _cli(tmp_path, env, "users", "create", "bob", "--json")
    created = _cli(
        tmp_path, env, "keys", "create", "--user", "bob", "--models", "gpt-4o-mini", "--expires", "30d", "--json"
    )
    assert isinstance(user, dict) and isinstance(created, dict)
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=created["key"], max_retries=0)
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content

    listed = _cli(tmp_path, env, "keys", "list", "--user", "bob", "--json")
    assert isinstance(listed, list)
    assert [k["id"] for k in listed] == [created["id"]]
    assert created["key"] not in json.dumps(listed)

    _cli(tmp_path, env, "keys", "revoke", created["id"], "--json")
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if httpx.get(served.url + "/v1/me", headers={"authorization": f"Bearer {created['key']}"}).status_code == 401:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a revoked key kept working for more than 2 seconds")

    served.stop()
    again = Served(tmp_path, env)
    assert "store it now" not in again.stop(), "the bootstrap key is printed on the first start only"


def test_cli_errors_are_clean(tmp_path: Path, env: dict[str, str]) -> None:
    subprocess.run([*TOLLGATE, "migrate"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    missing = subprocess.run(
        [*TOLLGATE, "keys", "create", "--user", "ghost"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "No user 'ghost'" in missing.stderr
    bad = subprocess.run(
        [*TOLLGATE, "keys", "create", "--user", "ghost", "--expires", "soon"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


def test_postgres_without_a_secret_refuses_to_start(tmp_path: Path, env: dict[str, str]) -> None:
    env = env | {"DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/test"}
    done = subprocess.run([*TOLLGATE, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "TOLLGATE_SECRET_KEY is required" in done.stderr
