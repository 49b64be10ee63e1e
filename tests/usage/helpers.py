"""Ledger rows made by hand, written the way settlement writes them (rows and rollup together)."""

from __future__ import annotations

from datetime import datetime
from itertools import count

from sqlalchemy.ext.asyncio import AsyncSession

from app.kit.crypto import new_id
from app.usage.repository import UsageRepository

_serial = count(1)


def row(
    at: datetime,
    *,
    key: str,
    user: str,
    team: str | None = None,
    model: str = "m-a",
    endpoint: str = "chat.completions",
    status: str = "ok",
    prompt: int = 10,
    cached: int = 0,
    completion: int = 5,
    reasoning: int = 0,
    cost: int = 100,
) -> dict[str, object]:
    return {
        "request_id": new_id("req") + f"-{next(_serial)}",
        "api_key_id": key,
        "user_id": user,
        "team_id": team,
        "endpoint": endpoint,
        "model": model,
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
        "cost_micros": cost,
        "status": status,
        "http_status": 200,
        "latency_ms": 1,
        "upstream_request_id": None,
        "usage_source": "upstream",
        "error_code": None,
        "upstream": None,
        "unit": None,
        "units": None,
        "created_at": at,
    }


async def write(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    await UsageRepository(session).write(rows)
    await session.flush()
