"""Admission and settlement around one upstream call: rate limits, then the budget reservation;
afterwards the settlement and the release of the concurrency slot."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.api_keys.schemas import Principal
from app.errors import RateLimited
from app.kit.timing import set_request_model
from app.metrics.service import rate_limit_refused
from app.ratelimits.limiter import Limit, RateLimiter
from app.ratelimits.service import LimitsCache
from app.spend.service import Estimate, Reservation, SpendService
from app.usage.service import Settlement

_WHAT = {
    "requests": "too many requests per minute",
    "tokens": "too many tokens per minute",
    "concurrency": "too many requests in flight",
}


@dataclass(slots=True)
class Admission:
    principal: Principal
    reservation: Reservation
    limits: list[Limit] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    upstream: str | None = None  # the upstream that answered, once one has
    estimate: Estimate | None = None


class Meter:
    def __init__(self, spend: SpendService, limiter: RateLimiter, limits: LimitsCache) -> None:
        self.spend = spend
        self.limiter = limiter
        self.limits = limits

    async def admit(self, principal: Principal, request_id: str, estimate: Estimate) -> Admission:
        # Every caller has authorized the model by now: it is served and priced, a bounded label.
        set_request_model(estimate.model)
        limits = await self.limits.for_principal(principal)
        headers: dict[str, str] = {}
        if limits:
            decision = await self.limiter.acquire(request_id, limits, self._tokens(estimate))
            if not decision.allowed:
                rate_limit_refused(decision.reason or "requests")
                error = RateLimited(
                    f"Rate limit reached for this {decision.scope}: {_WHAT[decision.reason or 'requests']}. "
                    f"Retry after {decision.retry_after_s} s.",
                    headers=decision.headers,
                )
                error.type = "tokens" if decision.reason == "tokens" else "requests"
                raise error
            headers = decision.headers
        try:
            reservation = await self.spend.reserve(principal, request_id, estimate)
        except BaseException:
            await self.limiter.release(request_id, limits)
            raise
        return Admission(principal, reservation, limits, headers, estimate=estimate)

    def worst_case(self, admission: Admission) -> int:
        """The most the admitted call can cost: what is charged when upstream did the work but its
        answer was lost. The reservation when a budget holds one, else the same arithmetic."""
        if admission.reservation.budget_ids or admission.estimate is None:
            return admission.reservation.amount
        return self.spend.worst_case(admission.estimate)

    async def finish(self, admission: Admission, settlement: Settlement) -> None:
        try:
            self.spend.settle(admission.principal, admission.reservation, settlement)
        finally:
            if admission.limits:
                await self.limiter.release(admission.reservation.request_id, admission.limits)

    def _tokens(self, estimate: Estimate) -> int:
        """What TPM counts: the prompt plus the most the answer may be, as OpenAI counts it."""
        if not estimate.has_output:
            return estimate.prompt_tokens
        return estimate.prompt_tokens + self.spend.output_ceiling(estimate) * estimate.choices
