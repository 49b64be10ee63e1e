"""Orchestration of a metered call: authorize -> admit (rate limits, reservation) -> call
upstream -> relay -> settle.

Nothing here holds a DB session across the upstream call: the reservation commits before it,
and settlement opens its own short session once the outcome is known.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import aiohttp
import anyio
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.errors import GatewayError, InvalidRequest, NotFound, UpstreamAnswerLost, UpstreamError
from app.gateway.metering import Admission, Meter
from app.gateway.schemas import ChatRequest, parse_chat, parse_embeddings
from app.gateway.streaming import OUTCOME_COMPLETED, OUTCOME_DISCONNECTED, ChunkStream, RelayResult, SSERelay
from app.gateway.upstream import DEFAULT_UPSTREAM, Reply, Upstream
from app.kit.tokens import acount_embedding_input, aestimate_chat_prompt, count_chat_prompt, count_text
from app.metrics.service import upstream_failed
from app.models import usage_record as status
from app.spend.service import Estimate
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.service import Settlement

_R = TypeVar("_R", Reply, aiohttp.ClientResponse)
AnswerHook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CallContext:
    principal: Principal
    request_id: str
    started: float
    endpoint: str
    model: str = ""


def tokens_from_usage(block: dict[str, Any]) -> TokenUsage:
    prompt_details = block.get("prompt_tokens_details") or {}
    completion_details = block.get("completion_tokens_details") or {}
    return TokenUsage(
        prompt=int(block.get("prompt_tokens") or 0),
        cached=int(prompt_details.get("cached_tokens") or 0),
        completion=int(block.get("completion_tokens") or 0),
        reasoning=int(completion_details.get("reasoning_tokens") or 0),
    )


def stream_status(outcome: str) -> str:
    """The ledger status of a stream that ended with ``outcome``."""
    if outcome == OUTCOME_COMPLETED:
        return status.STATUS_OK
    if outcome == OUTCOME_DISCONNECTED:
        return status.STATUS_CLIENT_DISCONNECTED
    return status.STATUS_STREAM_ERROR


def shown(model: str) -> str:
    """A model name as error messages quote it: a megabyte of "model" is not echoed back."""
    return model if len(model) <= 256 else model[:256] + "..."


def model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{shown(model)}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


ModelAccess = Callable[[Principal, str], bool]


class Gateway:
    def __init__(self, upstream: Upstream, prices: PriceBook, meter: Meter) -> None:
        self.upstream = upstream
        self.prices = prices
        self.meter = meter
        # Who may call a fine-tuned (ft:) model; set at start by the fine-tuning domain. All
        # tenants share the upstream organization, whose fine-tuned models any key could reach.
        self.fine_tuned_access: ModelAccess | None = None

    def authorize(self, principal: Principal, model: str) -> None:
        if not principal.may_use(model):
            raise model_not_found(model)
        access = self.fine_tuned_access
        if access is not None and model.startswith("ft:") and not access(principal, model):
            raise model_not_found(model)
        if not self.prices.is_priced(model):
            raise InvalidRequest(
                f"Tollgate has no price for model '{shown(model)}', so it cannot meter it. "
                "An administrator can price it with TOLLGATE_PRICE_OVERRIDES.",
                param="model",
                code="model_not_priced",
            )

    async def chat(
        self, ctx: CallContext, raw: bytes, body: dict[str, Any], on_answer: AnswerHook | None = None
    ) -> Response:
        """``on_answer`` is called with the first choice's text once the call has succeeded and
        been settled (a thread that records the exchange)."""
        ctx, req, admission, body, raw = await self._admit_chat(ctx, raw, body)
        if req.stream:
            return await self._chat_stream(ctx, admission, req, body, raw, on_answer)

        def estimate_usage(parsed: dict[str, Any] | None) -> TokenUsage:
            text = _message_text(parsed) if parsed else ""
            return TokenUsage(prompt=count_chat_prompt(req.model, req.messages), completion=count_text(req.model, text))

        response = await self.call_json(ctx, admission, "/chat/completions", raw, estimate_usage)
        if on_answer is not None:
            await on_answer(_first_choice_text(bytes(response.body)))
        return response

    async def open_chat_stream(self, ctx: CallContext, body: dict[str, Any]) -> ChunkStream:
        """A streamed chat call whose chunks Tollgate consumes itself (streamed runs); metered and
        settled like any chat call when the returned stream's block is left."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        ctx, req, admission, body, raw = await self._admit_chat(ctx, json.dumps(body).encode(), body)
        response = await self.send(ctx, admission, self.upstream.stream("/chat/completions", raw, model=req.model))
        upstream_id = response.headers.get("x-request-id")

        def prompt() -> int:
            return count_chat_prompt(req.model, req.messages)

        async def finish(outcome: str, usage: dict[str, Any] | None, text: Callable[[], str]) -> TokenUsage:
            return await self._settle_stream(ctx, admission, prompt, upstream_id, outcome, usage, text)

        return ChunkStream(response, finish)

    async def _admit_chat(
        self, ctx: CallContext, raw: bytes, body: dict[str, Any]
    ) -> tuple[CallContext, ChatRequest, Admission, dict[str, Any], bytes]:
        req = parse_chat(body)
        self.authorize(ctx.principal, req.model)
        ctx = replace(ctx, model=req.model)
        cap_field = "max_tokens" if "max_completion_tokens" not in body and "max_tokens" in body else None
        cap_field = cap_field or "max_completion_tokens"
        estimate = Estimate(
            model=req.model,
            endpoint=ctx.endpoint,
            prompt_tokens=await aestimate_chat_prompt(req.model, body),
            requested_cap=body.get(cap_field),
            choices=int(body.get("n") or 1),
        )
        admission = await self.meter.admit(ctx.principal, ctx.request_id, estimate)
        cap = admission.reservation.output_cap
        if cap is not None and cap != estimate.requested_cap:
            # The cap that was reserved is the cap upstream must enforce.
            body, raw = with_fields(body, raw, {cap_field: cap})
        return ctx, req, admission, body, raw

    async def embeddings(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_embeddings(body)
        self.authorize(ctx.principal, req.model)
        ctx = replace(ctx, model=req.model)
        prompt = await acount_embedding_input(req.model, req.input)
        estimate = Estimate(req.model, ctx.endpoint, prompt, requested_cap=None, has_output=False)
        admission = await self.meter.admit(ctx.principal, ctx.request_id, estimate)
        return await self.call_json(ctx, admission, "/embeddings", raw, lambda _: TokenUsage(prompt=prompt))

    async def call_json(
        self,
        ctx: CallContext,
        admission: Admission,
        path: str,
        raw: bytes,
        estimate: Callable[[dict[str, Any] | None], TokenUsage],
        *,
        free: bool = False,
        tokens_of: Callable[[dict[str, Any]], TokenUsage] = tokens_from_usage,
        stateful: bool = False,
    ) -> Response:
        """Sends a JSON call and settles it: from the answer's ``usage`` block (read by
        ``tokens_of``) when there is one, else from ``estimate`` of the parsed answer. A ``free``
        call is still recorded, at cost 0. A ``stateful`` call creates an object upstream keeps, so
        it goes to the primary upstream, where later calls on that object will find it."""
        model = None if stateful else ctx.model
        response = await self.send(ctx, admission, self.upstream.request("POST", path, raw, model=model))
        upstream_id = response.headers.get("x-request-id")
        cost = 0 if free else None
        try:
            parsed = json.loads(response.content)
            block = parsed.get("usage")
        except (ValueError, AttributeError):
            # A 200 upstream billed, whose usage cannot be read: the worst case is charged.
            lost = 0 if free else self.meter.worst_case(admission)
            upstream_failed(admission.upstream or DEFAULT_UPSTREAM, "bad_response")
            await self.settle(
                ctx,
                admission,
                estimate(None),
                status.STATUS_UPSTREAM_ERROR,
                502,
                upstream_id,
                "bad_json",
                source=False,
                cost=lost,
            )
            raise UpstreamError("The upstream API returned a malformed response.") from None
        if isinstance(block, dict):
            tokens = tokens_of(block)
            await self.settle(ctx, admission, tokens, status.STATUS_OK, 200, upstream_id, cost=cost)
        else:
            tokens = estimate(parsed)
            await self.settle(ctx, admission, tokens, status.STATUS_OK, 200, upstream_id, source=False, cost=cost)
        media_type = response.headers.get("content-type", "application/json")
        return Response(response.content, media_type=media_type, headers=admission.headers)

    async def _chat_stream(
        self,
        ctx: CallContext,
        admission: Admission,
        req: ChatRequest,
        body: dict[str, Any],
        raw: bytes,
        on_answer: AnswerHook | None,
    ) -> Response:
        def prompt() -> int:
            return count_chat_prompt(req.model, req.messages)

        return await self.relay_stream(
            ctx, admission, "/chat/completions", body, raw, req.client_wants_usage, prompt, on_answer
        )

    async def relay_stream(
        self,
        ctx: CallContext,
        admission: Admission,
        path: str,
        body: dict[str, Any],
        raw: bytes,
        client_wants_usage: bool,
        prompt: Callable[[], int],
        on_answer: AnswerHook | None = None,
    ) -> Response:
        """``prompt`` counts the prompt with tiktoken, needed only if upstream never sends usage."""
        if not client_wants_usage:
            # Always ask for usage: billing depends on it. The client never sees the extra event.
            options = {**(body.get("stream_options") or {}), "include_usage": True}
            body, raw = with_fields(body, raw, {"stream_options": options})
        response = await self.send(ctx, admission, self.upstream.stream(path, raw, model=ctx.model))
        upstream_id = response.headers.get("x-request-id")

        async def finish(result: RelayResult) -> None:
            outcome, usage = result.outcome, result.usage
            await self._settle_stream(ctx, admission, prompt, upstream_id, outcome, usage, result.relayed_text)
            if on_answer is not None and result.outcome == OUTCOME_COMPLETED:
                await on_answer(result.relayed_content())

        return SSERelay(response, keep_usage_event=client_wants_usage, headers=admission.headers, on_finish=finish)

    async def _settle_stream(
        self,
        ctx: CallContext,
        admission: Admission,
        prompt: Callable[[], int],
        upstream_id: str | None,
        outcome: str,
        usage: dict[str, Any] | None,
        text: Callable[[], str],
    ) -> TokenUsage:
        """Upstream's usage block when it came; otherwise tiktoken's count of what was delivered."""
        if usage is not None:
            tokens, upstream_counted = tokens_from_usage(usage), True
        else:
            tokens = TokenUsage(prompt=prompt(), completion=count_text(ctx.model, text()))
            upstream_counted = False
        await self.settle(ctx, admission, tokens, stream_status(outcome), 200, upstream_id, source=upstream_counted)
        return tokens

    async def send(self, ctx: CallContext, admission: Admission, call: Awaitable[_R]) -> _R:
        try:
            answer = await call
        except UpstreamAnswerLost as exc:
            # Upstream took the call and may have billed it; without its usage the worst case is charged.
            await self.settle(
                ctx,
                admission,
                TokenUsage(),
                status.STATUS_UPSTREAM_ERROR,
                exc.status_code,
                None,
                exc.code,
                source=False,
                cost=self.meter.worst_case(admission),
            )
            raise
        except GatewayError as exc:
            # Nothing was billed upstream: settling at zero releases the reservation.
            await self.settle(
                ctx, admission, TokenUsage(), status.STATUS_UPSTREAM_ERROR, exc.status_code, None, exc.code, cost=0
            )
            raise
        except BaseException:
            # The client went away (cancellation) or something broke: still release the money.
            with anyio.CancelScope(shield=True):
                await self.settle(
                    ctx, admission, TokenUsage(), status.STATUS_UPSTREAM_ERROR, 499, None, "cancelled", cost=0
                )
            raise
        admission.upstream = self.upstream.served_by(answer)
        return answer

    async def settle(
        self,
        ctx: CallContext,
        admission: Admission,
        tokens: TokenUsage,
        outcome: str,
        http_status: int,
        upstream_id: str | None,
        error_code: str | None = None,
        *,
        source: bool = True,
        cost: int | None = None,
        units: tuple[str, int] | None = None,
    ) -> None:
        """``cost`` defaults to the tokens at the model's token prices; calls priced otherwise
        (by the piece, or free) pass their own, and ``units`` says what was counted."""
        if outcome == status.STATUS_STREAM_ERROR:
            # Every relay of a metered stream ends here, and only here is the upstream known.
            upstream_failed(admission.upstream or DEFAULT_UPSTREAM, "stream_broken")
        settlement = Settlement(
            request_id=ctx.request_id,
            endpoint=ctx.endpoint,
            model=ctx.model,
            tokens=tokens,
            cost_micros=self.prices.cost_micros(ctx.model, tokens) if cost is None else cost,
            unit=units[0] if units else None,
            units=units[1] if units else None,
            status=outcome,
            http_status=http_status,
            latency_ms=int((time.perf_counter() - ctx.started) * 1000),
            usage_source=status.SOURCE_UPSTREAM if source else status.SOURCE_ESTIMATED,
            upstream_request_id=upstream_id,
            error_code=error_code,
            upstream=admission.upstream,
        )
        await self.meter.finish(admission, settlement)


def with_fields(body: dict[str, Any], raw: bytes, fields: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The body with ``fields`` set. Fields the client did not send are spliced in front of its
    own bytes, which stay exactly as sent (and a large prompt is not serialised again); a field
    it did send is replaced by serialising the whole body."""
    merged = {**body, **fields}
    if any(name in body for name in fields):
        return merged, json.dumps(merged, separators=(",", ":"), ensure_ascii=False).encode()
    start = raw.index(b"{") + 1
    added = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()[1:-1]
    rest = raw[start:]
    separator = b"" if rest.lstrip().startswith(b"}") else b","
    return merged, raw[:start] + added + separator + rest


def _message_text(parsed: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in parsed.get("choices") or ():
        message = choice.get("message") or {} if isinstance(choice, dict) else {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "".join(parts)


def _first_choice_text(content: bytes) -> str:
    try:
        parsed = json.loads(content)
        text = parsed["choices"][0]["message"]["content"]
    except (ValueError, LookupError, TypeError):
        return ""
    return text if isinstance(text, str) else ""
