"""What every media call shares: authorize, reserve a fixed upper bound, call, settle.

A media call's price is not "prompt plus capped output", so it is reserved as one amount: the
most the call can cost (n images at their price, the characters of a speech input, an upper
bound of an upload's audio seconds), and settled to what upstream reports it did.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.errors import InvalidRequest, UpstreamError
from app.gateway.metering import Admission
from app.gateway.service import CallContext, Gateway, model_not_found
from app.gateway.streaming import OUTCOME_COMPLETED, OUTCOME_DISCONNECTED
from app.gateway.upstream import Reply
from app.media.pricing import MediaPrices
from app.models import usage_record as status
from app.spend.service import Estimate
from app.usage.pricing import TokenUsage


class Billed:
    """The outcome of a finished media call as it is written to the ledger."""

    __slots__ = ("cost", "estimated", "tokens", "units")

    def __init__(
        self, cost: int, tokens: TokenUsage | None = None, units: tuple[str, int] | None = None, *, estimated: bool
    ) -> None:
        self.cost = cost
        self.tokens = tokens or TokenUsage()
        self.units = units
        self.estimated = estimated


class MediaCalls:
    def __init__(self, gateway: Gateway, prices: MediaPrices) -> None:
        self.gateway = gateway
        self.prices = prices

    def authorize(self, principal: Principal, model: str) -> None:
        if not principal.may_use(model):
            raise model_not_found(model)
        if not self.prices.is_per_image(model) and self.prices.table_price(model) is None:
            raise InvalidRequest(
                f"Tollgate has no price for model '{model}', so it cannot meter it. An administrator "
                "can price it with TOLLGATE_PRICE_OVERRIDES or TOLLGATE_IMAGE_PRICES.",
                param="model",
                code="model_not_priced",
            )

    async def admit(
        self, ctx: CallContext, model: str, micros: int, prompt_tokens: int = 0
    ) -> tuple[CallContext, Admission]:
        ctx = replace(ctx, model=model)
        estimate = Estimate.fixed(model, ctx.endpoint, micros, prompt_tokens=prompt_tokens)
        return ctx, await self.gateway.meter.admit(ctx.principal, ctx.request_id, estimate)

    async def settle(
        self, ctx: CallContext, admission: Admission, billed: Billed, outcome: str = OUTCOME_COMPLETED
    ) -> None:
        row_status = {
            OUTCOME_COMPLETED: status.STATUS_OK,
            OUTCOME_DISCONNECTED: status.STATUS_CLIENT_DISCONNECTED,
        }.get(outcome, status.STATUS_STREAM_ERROR)
        await self.gateway.settle(
            ctx,
            admission,
            billed.tokens,
            row_status,
            200,
            None,
            source=not billed.estimated,
            cost=billed.cost,
            units=billed.units,
        )

    async def settle_reply(self, ctx: CallContext, admission: Admission, reply: Reply, billed: Billed) -> Response:
        await self.gateway.settle(
            ctx,
            admission,
            billed.tokens,
            status.STATUS_OK,
            200,
            reply.headers.get("x-request-id"),
            source=not billed.estimated,
            cost=billed.cost,
            units=billed.units,
        )
        media_type = reply.headers.get("content-type", "application/json")
        return Response(reply.content, media_type=media_type, headers=admission.headers)

    async def malformed(self, ctx: CallContext, admission: Admission, reply: Reply, bound: int) -> UpstreamError:
        """Upstream answered 200 (and billed) but the answer cannot be read: the upper bound that
        was quoted is charged, the best knowledge of what upstream did."""
        await self.gateway.settle(
            ctx,
            admission,
            TokenUsage(),
            status.STATUS_UPSTREAM_ERROR,
            502,
            reply.headers.get("x-request-id"),
            "bad_json",
            source=False,
            cost=bound,
        )
        return UpstreamError("The upstream API returned a malformed response.")


def parse_json(content: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(content)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
