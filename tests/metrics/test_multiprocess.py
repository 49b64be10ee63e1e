"""Metrics across worker processes: every worker's counters in one scrape, dead workers' gauges dropped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.config import Settings
from app.metrics.multiprocess import ENV, forget_dead_workers, metrics_dir
from tests.fixtures.live_server import LiveServer
from tests.fixtures.processes import TollgateProcess, replica_env
from tests.fixtures.servers import ADMIN_KEY
from tests.metrics.scrape import Samples, parse

ROOT = Path(__file__).resolve().parents[2]
# What a worker does: answer a request, and open a stream it never closes (it dies with it open).
WORKER = textwrap.dedent(
    """
    import sys
    from app.metrics import service
    service.record_request("/v1/chat/completions", 200, "gpt-4o-mini", 0.02, 0.001)
    service.record_ledger_rows([{"model": "gpt-4o-mini", "team_id": "team_a", "prompt_tokens": 5,
        "cached_tokens": 0, "completion_tokens": 2, "reasoning_tokens": 0, "cost_micros": 11}])
    service.OPEN_STREAMS.inc()
    print("ready", flush=True)
    if "--stay" in sys.argv:
        sys.stdin.read()
    """
)
SCRAPER = "from prometheus_client import generate_latest\nfrom app.metrics.multiprocess import scrape_registry\n"
SCRAPER += "print(generate_latest(scrape_registry()).decode())"


def _python(path: Path, code: str, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {ENV: str(path)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _scrape(path: Path) -> Samples:
    """A scrape as the /metrics route makes it, in a process of its own (the mode is per process)."""
    out, _ = _python(path, SCRAPER).communicate(timeout=60)
    return parse(out)


@pytest.fixture
def shared_dir(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    return path


def test_a_scrape_adds_up_every_workers_files(shared_dir: Path) -> None:
    for _ in range(2):
        worker = _python(shared_dir, WORKER)
        assert worker.communicate(timeout=60)[0].strip() == "ready"
    alive = _python(shared_dir, WORKER, "--stay")
    try:
        assert alive.stdout is not None and alive.stdout.readline().strip() == "ready"
        samples = _scrape(shared_dir)
        labels = {"route": "/v1/chat/completions", "status_class": "2xx", "model": "gpt-4o-mini"}
        assert samples.get("tollgate_requests_total", **labels) == 3
        assert samples.get("tollgate_overhead_seconds_count", route="/v1/chat/completions") == 3
        assert samples.get("tollgate_cost_micros_total", model="gpt-4o-mini", team="team_a") == 33
        assert samples.get("tollgate_open_streams") == 3  # two of them died with their stream open

        dead = forget_dead_workers(str(shared_dir))
        assert len(dead) == 2 and alive.pid not in dead
        samples = _scrape(shared_dir)
        assert samples.get("tollgate_open_streams") == 1  # only the live worker's stream is open
        assert samples.get("tollgate_requests_total", **labels) == 3  # counters outlive their worker
    finally:
        alive.communicate("", timeout=60)


def test_serve_gives_several_workers_a_private_directory_and_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with metrics_dir(1) as none:
        assert none is None and ENV not in os.environ
    with metrics_dir(2) as path:
        assert path is not None and path.is_dir()
        assert os.environ[ENV] == str(path)
        (path / "counter_123.db").write_bytes(b"")
    assert not path.exists()
    assert ENV not in os.environ


def test_an_operators_directory_is_emptied_of_old_metric_files(
    monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    (shared_dir / "counter_999.db").write_bytes(b"old run")
    (shared_dir / "notes.txt").write_text("not ours")
    monkeypatch.setenv(ENV, str(shared_dir))
    with metrics_dir(1) as path:
        assert path == shared_dir
        assert not (shared_dir / "counter_999.db").exists()
    assert (shared_dir / "notes.txt").exists() and shared_dir.is_dir()


def test_the_cli_clears_the_directory_before_any_metric_exists() -> None:
    """``tollgate serve`` empties the directory, then (with one worker) serves in the same process:
    files this process had opened before would be deleted under it, and its metrics lost."""
    code = "import sys, app.cli.main; print('app.metrics.service' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.fixture
def two_workers(tmp_path: Path, settings: Settings, mock_upstream: LiveServer) -> Iterator[TollgateProcess]:
    env = replica_env(settings.database.url, mock_upstream.url) | {"TOLLGATE_WORKERS": "2"}
    env.pop(ENV, None)
    process = TollgateProcess(tmp_path, env, "--skip-migrations")
    try:
        yield process
    finally:
        process.stop()


async def test_tollgate_serve_with_two_workers_counts_every_request_once(two_workers: TollgateProcess) -> None:
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=two_workers.url, timeout=10, headers=headers) as http:

        async def healthz_count() -> float:
            response = await http.get("/metrics")
            assert response.status_code == 200, response.text
            return parse(response.text).get("tollgate_requests_total", route="/healthz", status_class="2xx", model="")

        before = await healthz_count()
        for _ in range(20):
            # A new connection each time, so the kernel spreads them over both workers.
            async with httpx.AsyncClient(base_url=two_workers.url, timeout=10) as fresh:
                assert (await fresh.get("/healthz")).status_code == 200
        # Whichever worker answers a scrape, it reads every worker's counters.
        assert {await healthz_count() - before for _ in range(6)} == {20}
