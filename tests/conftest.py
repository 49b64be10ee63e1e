"""Test setup: the environment first (before app modules read it), then the shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

_SHARED_TIKTOKEN = Path(__file__).resolve().parents[2] / "shared" / "tiktoken"
if "TIKTOKEN_CACHE_DIR" not in os.environ and _SHARED_TIKTOKEN.is_dir():
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_SHARED_TIKTOKEN)

# leaks first: its session check is set up before, so torn down after, every other fixture.
pytest_plugins = ["tests.fixtures.leaks", "tests.fixtures.database", "tests.fixtures.servers"]
