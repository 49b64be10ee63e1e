"""The zero-setup path a newcomer takes: ``tollgate serve`` on SQLite, the CLI, and the SDK."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fixtures.live_server import LiveServer
from tests.fixtures.processes import TOLLGATE, TollgateProcess, clean_env
from tests.fixtures.servers import UPSTREAM_KEY

pytestmark = pytest.mark.sqlite


@pytest.fixture
def env(mock_upstream: LiveServer) -> dict[str, str]:
    return clean_env(OPENAI_BASE_URL=mock_upstream.url + "/v1", OPENAI_API_KEY=UPSTREAM_KEY)


def _cli(tmp_path: Path, env: dict[str, str], *args: str) -> Any:
    done = subprocess.run([TOLLGATE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def served(tmp_path: Path, env: dict[str, str]) -> Iterator[TollgateProcess]:
    server = TollgateProcess(tmp_path, env)
    yield server
    server.stop()


def test_serve_migrates_prints_admin_key_once_and_meters_chat(
    tmp_path: Path, env: dict[str, str], served: TollgateProcess
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
    again = TollgateProcess(tmp_path, env)
    assert "store it now" not in again.stop(), "the bootstrap key is printed on the first start only"


def test_cli_errors_are_clean(tmp_path: Path, env: dict[str, str]) -> None:
    subprocess.run([TOLLGATE, "migrate"], cwd=tmp_path, env=env, check=True, capture_output=True, timeout=60)
    missing = subprocess.run(
        [TOLLGATE, "keys", "create", "--user", "ghost"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "No user 'ghost'" in missing.stderr
    bad = subprocess.run(
        [TOLLGATE, "keys", "create", "--user", "ghost", "--expires", "soon"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


def test_postgres_without_a_secret_refuses_to_start(tmp_path: Path, env: dict[str, str]) -> None:
    env = env | {"DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/test"}
    done = subprocess.run([TOLLGATE, "migrate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "TOLLGATE_SECRET_KEY is required" in done.stderr


def test_budgets_and_limits_from_the_cli_on_sqlite(
    tmp_path: Path, env: dict[str, str], served: TollgateProcess
) -> None:
    _cli(tmp_path, env, "users", "create", "carl", "--json")
    key = _cli(tmp_path, env, "keys", "create", "--user", "carl", "--json")
    assert isinstance(key, dict)
    budget = _cli(tmp_path, env, "budgets", "create", "--key", key["id"], "--limit", "1", "--period", "daily", "--json")
    assert isinstance(budget, dict)
    assert (budget["scope"], budget["limit_micros"], budget["period"]) == ("key", 1_000_000, "daily")

    client = openai.OpenAI(base_url=served.url + "/v1", api_key=key["key"], max_retries=0)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=10)
    [listed] = _cli(tmp_path, env, "budgets", "list", "--key", key["id"], "--json")
    assert 0 < listed["spent_micros"] < 1_000_000
    assert listed["reserved_micros"] == 0

    lowered = _cli(tmp_path, env, "budgets", "update", budget["id"], "--limit", "0.000001", "--json")
    assert isinstance(lowered, dict)
    assert lowered["limit_micros"] == 1
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "key_budget_exceeded"

    limit = _cli(tmp_path, env, "limits", "set", "--user", "carl", "--rpm", "10", "--concurrent", "2", "--json")
    assert isinstance(limit, dict)
    assert (limit["rpm"], limit["concurrent"], limit["tpm"]) == (10, 2, None)
    assert [row["id"] for row in _cli(tmp_path, env, "limits", "list", "--json")] == [limit["id"]]
    bad = subprocess.run(
        [TOLLGATE, "budgets", "create", "--key", key["id"], "--user", "carl", "--limit", "1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2


def test_threads_page_filter_and_cascade_on_sqlite(
    tmp_path: Path, env: dict[str, str], served: TollgateProcess
) -> None:
    """Keyset cursors (row values) and metadata filters (JSON paths) on the zero-setup database."""
    _cli(tmp_path, env, "users", "create", "tess", "--json")
    key = _cli(tmp_path, env, "keys", "create", "--user", "tess", "--json")["key"]
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0)
    threads = [client.beta.threads.create(metadata={"n": str(i)}) for i in range(3)]
    thread = threads[0]
    for i in range(5):
        client.beta.threads.messages.create(thread.id, role="user", content=f"m{i}")
    seen = [m.content[0].text.value for m in client.beta.threads.messages.list(thread.id, order="asc", limit=2)]  # type: ignore[union-attr]
    assert seen == [f"m{i}" for i in range(5)]
    headers = {"authorization": f"Bearer {key}"}
    filtered = httpx.get(served.url + "/v1/threads", params={"metadata[n]": "2"}, headers=headers).json()
    assert [t["id"] for t in filtered["data"]] == [threads[2].id]
    assistant = client.beta.assistants.create(model="gpt-4o-mini")
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        stream.until_done()
        assert stream.get_final_run().status == "completed"
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "m5"}],
        extra_headers={"X-Tollgate-Thread-Id": thread.id},
    )
    roles = [m.role for m in client.beta.threads.messages.list(thread.id, order="asc")]
    assert roles == ["user"] * 5 + ["assistant", "user", "assistant"]
    client.beta.threads.delete(thread.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(thread.id)
    client.close()


def _token_servers(parent: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(parent), "-f", "app.kit.token_server"], capture_output=True)
    return [int(p) for p in found.stdout.split()]


def test_serve_runs_one_token_server_restarts_it_and_stops_it(
    tmp_path: Path, env: dict[str, str], served: TollgateProcess
) -> None:
    """The worker counts through the shared token server; killed, it is started again and no
    request fails meanwhile (the worker counts in process); stopping Tollgate stops it."""
    _cli(tmp_path, env, "users", "create", "bob", "--json")
    created = _cli(tmp_path, env, "keys", "create", "--user", "bob", "--json")
    client = openai.OpenAI(base_url=served.url + "/v1", api_key=created["key"], max_retries=0)
    (first,) = _token_servers(served.proc.pid)
    subprocess.run(["kill", "-9", str(first)], check=True)
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _token_servers(served.proc.pid) in ([], [first]):
        time.sleep(0.1)
    (second,) = _token_servers(served.proc.pid)
    assert second != first
    client.embeddings.create(model="text-embedding-3-small", input="hi")
    socket_path = Path(Path(f"/proc/{second}/cmdline").read_bytes().split(b"\0")[3].decode())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not socket_path.exists():  # bound once its tables are loaded
        time.sleep(0.1)
    assert socket_path.exists()
    served.stop()
    # uvicorn ends by raising SIGTERM again, so the server notices its parent is gone (within 1 s).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(second):
        time.sleep(0.1)
    assert not _running(second)
    assert not socket_path.parent.exists(), "the server's private directory was left behind"


def _running(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_serve_with_the_shared_tokenizer_off_starts_no_token_server(tmp_path: Path, env: dict[str, str]) -> None:
    served = TollgateProcess(tmp_path, env | {"TOLLGATE_SHARED_TOKENIZER": "false"})
    try:
        assert _token_servers(served.proc.pid) == []
        _cli(tmp_path, env, "users", "create", "bob", "--json")
        created = _cli(tmp_path, env, "keys", "create", "--user", "bob", "--json")
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=created["key"], max_retries=0)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    finally:
        served.stop()
