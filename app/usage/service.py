"""What a finished call costs and how it is written to the ledger (by ``app.spend``)."""

from __future__ import annotations

from dataclasses import dataclass

from app.kit.db_types import utcnow
from app.usage.pricing import TokenUsage


@dataclass(slots=True)
class Settlement:
    request_id: str
    endpoint: str
    model: str
    tokens: TokenUsage
    cost_micros: int
    status: str
    http_status: int
    latency_ms: int
    usage_source: str
    upstream_request_id: str | None = None
    error_code: str | None = None
    upstream: str | None = None
    # Calls billed by the piece: what was counted (see usage_record.UNIT_*) and how many.
    unit: str | None = None
    units: int | None = None


def record_values(key_id: str, user_id: str, team_id: str | None, s: Settlement) -> dict[str, object]:
    return {
        "request_id": s.request_id,
        "api_key_id": key_id,
        "user_id": user_id,
        "team_id": team_id,
        "endpoint": s.endpoint,
        "model": s.model,
        "prompt_tokens": s.tokens.prompt,
        "cached_tokens": s.tokens.cached,
        "completion_tokens": s.tokens.completion,
        "reasoning_tokens": s.tokens.reasoning,
        "cost_micros": s.cost_micros,
        "status": s.status,
        "http_status": s.http_status,
        "latency_ms": s.latency_ms,
        "upstream_request_id": s.upstream_request_id,
        "usage_source": s.usage_source,
        "error_code": s.error_code,
        "upstream": s.upstream,
        "unit": s.unit,
        "units": s.units,
        "created_at": utcnow(),
    }
