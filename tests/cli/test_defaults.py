"""`tollgate serve` defaults."""

from __future__ import annotations

import os

from pydantic import SecretStr

from app.cli.main import _default_workers
from app.config import DatabaseSettings, KeySettings, Settings, SpendSettings


def _settings(url: str, redis_url: str | None) -> Settings:
    return Settings(
        database=DatabaseSettings(url=url),
        keys=KeySettings(secret_key=SecretStr("s" * 40)),
        spend=SpendSettings.model_validate({"REDIS_URL": redis_url}),
    )


def test_one_worker_unless_all_state_is_shared() -> None:
    assert _default_workers(_settings("sqlite+aiosqlite:///x.db", "redis://r")) == 1
    assert _default_workers(_settings("postgresql+asyncpg://h/db", None)) == 1, "in-process rate limits"
    assert _default_workers(_settings("postgresql+asyncpg://h/db", "redis://r")) == (os.cpu_count() or 1)
