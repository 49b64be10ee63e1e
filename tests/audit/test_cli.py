"""``tollgate audit list`` on the zero-setup SQLite default: the CLI's own changes, newest first."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.processes import TOLLGATE, clean_env

pytestmark = pytest.mark.sqlite


def _cli(tmp_path: Path, *args: str) -> Any:
    done = subprocess.run([TOLLGATE, *args], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


def test_cli_changes_are_listed_newest_first(tmp_path: Path) -> None:
    _cli(tmp_path, "migrate")
    user = _cli(tmp_path, "users", "create", "carol", "--json")
    key = _cli(tmp_path, "keys", "create", "--user", "carol", "--models", "gpt-4o-mini", "--json")
    _cli(tmp_path, "keys", "revoke", key["id"], "--json")

    events = _cli(tmp_path, "audit", "list", "--owner", "carol", "--since", "2000-01-01T00:00:00Z", "--json")
    assert [(e["action"], e["source"], e["target_id"]) for e in events] == [
        ("key.revoked", "cli", key["id"]),
        ("key.created", "cli", key["id"]),
        ("user.created", "cli", user["id"]),
    ]
    assert events[1]["detail"]["allowed_models"] == ["gpt-4o-mini"]
    assert key["key"] not in json.dumps(events)
    assert _cli(tmp_path, "audit", "list", "--action", "budget.*", "--json") == []
