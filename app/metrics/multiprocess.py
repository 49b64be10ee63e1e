"""Metrics that are right across worker processes.

``tollgate serve`` with several workers gives them one directory, through prometheus-client's
``PROMETHEUS_MULTIPROC_DIR``, before they start. Each worker's counters then live in memory-mapped
files there, and a scrape, whichever worker answers it, adds up every worker's files. Counters
of a worker that died are kept (they are cumulative); its gauges (open streams, pending
settlements) are dropped by the next worker that starts, which is how uvicorn replaces it.

prometheus-client picks in-memory or file-backed values when it is first imported, from that
variable. So the exposition asks which kind it got rather than reading the variable again:
the two can never disagree.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def is_multiprocess() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


@contextlib.contextmanager
def metrics_dir(workers: int) -> Iterator[Path | None]:
    """The directory several workers share, for as long as they run.

    An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is used and emptied of metric files at start
    (files left by an earlier run would be added to this one's); otherwise a private temporary
    directory is made for more than one worker and removed at the end. One worker without
    the variable keeps its metrics in memory and needs none.
    """
    if is_multiprocess() and "app.metrics.service" in sys.modules:
        # This process's own metric files exist already; emptying the directory would orphan them.
        raise RuntimeError("metric files must be cleared before app.metrics.service is imported")
    given = os.environ.get(ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    if workers <= 1:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="tollgate-metrics-"))
    os.environ[ENV] = str(path)
    try:
        yield path
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(path, ignore_errors=True)


def forget_dead_workers(path: str | None = None) -> list[int]:
    """Drops the live gauges of workers that no longer run; returns their pids."""
    path = path or os.environ.get(ENV)
    if not path or not Path(path).is_dir():
        return []
    pids = {int(m.group(1)) for f in Path(path).iterdir() if (m := _LIVE_GAUGE_FILE.match(f.name))}
    dead = sorted(pid for pid in pids if not _alive(pid))
    for pid in dead:
        mark_process_dead(pid, path)
    return dead


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, just not ours to signal
    return True


def scrape_registry() -> CollectorRegistry:
    """What a scrape reads: every worker's files, or this process's own registry (which also
    has prometheus-client's process and runtime metrics; those are per process, so a
    multiprocess scrape leaves them out)."""
    if not is_multiprocess():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, os.environ[ENV])
    return registry
