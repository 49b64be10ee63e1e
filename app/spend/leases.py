"""Lease rows: a reservation as the database holds it, and the ledger row of one the reaper charges."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from app.api_keys.schemas import Principal
from app.kit.db_types import utcnow
from app.models import BudgetLease
from app.models import usage_record as ledger
from app.usage.pricing import TokenUsage
from app.usage.service import Settlement, record_values

if TYPE_CHECKING:  # the service imports this module
    from app.spend.service import Estimate


def new_lease(
    principal: Principal,
    request_id: str,
    estimate: Estimate,
    budget_ids: list[str],
    amount: int,
    cap: int,
    now: datetime,
    ttl_s: float,
) -> BudgetLease:
    return BudgetLease(
        request_id=request_id,
        budget_ids=budget_ids,
        amount_micros=amount,
        api_key_id=principal.key_id,
        user_id=principal.user_id,
        team_id=principal.team_id,
        endpoint=estimate.endpoint,
        model=estimate.model,
        prompt_tokens=estimate.prompt_tokens,
        output_cap=cap * estimate.choices,
        expires_at=now + timedelta(seconds=ttl_s),
        created_at=now,
    )


def reaped_values(lease: BudgetLease) -> dict[str, object]:
    settlement = Settlement(
        request_id=lease.request_id,
        endpoint=lease.endpoint,
        model=lease.model,
        tokens=TokenUsage(prompt=lease.prompt_tokens, completion=lease.output_cap),
        cost_micros=lease.amount_micros,
        status=ledger.STATUS_LEASE_EXPIRED,
        http_status=0,
        latency_ms=int((utcnow() - lease.created_at).total_seconds() * 1000),
        usage_source=ledger.SOURCE_ESTIMATED,
    )
    return record_values(lease.api_key_id, lease.user_id, lease.team_id, settlement)
