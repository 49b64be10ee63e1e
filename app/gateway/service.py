"""Orchestration of a metered call: authorize -> call upstream -> relay -> settle.

Nothing here holds a DB session across the upstream call: settlement opens its own short
session once the outcome is known.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.errors import GatewayError, InvalidRequest, NotFound, UpstreamError
from app.gateway.schemas import ChatRequest, parse_chat, parse_embeddings
from app.gateway.streaming import OUTCOME_COMPLETED, OUTCOME_DISCONNECTED, RelayResult, SSERelay
from app.gateway.upstream import Upstream
from app.kit.tokens import count_chat_prompt, count_embedding_input, count_text
from app.models import usage_record as status
from app.usage import service as usage
from app.usage.pricing import PriceBook, TokenUsage


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


def model_not_found(model: str) -> NotFound:
    return NotFound(
        f"The model `{model}` does not exist or you do not have access to it.",
        param="model",
        code="model_not_found",
    )


class Gateway:
    def __init__(self, upstream: Upstream, prices: PriceBook, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.upstream = upstream
        self.prices = prices
        self.sessionmaker = sessionmaker

    def authorize(self, principal: Principal, model: str) -> None:
        if not principal.may_use(model):
            raise model_not_found(model)
        if not self.prices.is_priced(model):
            raise InvalidRequest(
                f"Tollgate has no price for model '{model}', so it cannot meter it. "
                "An administrator can price it with TOLLGATE_PRICE_OVERRIDES.",
                param="model",
                code="model_not_priced",
            )

    async def chat(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_chat(body)
        self.authorize(ctx.principal, req.model)
        ctx = replace(ctx, model=req.model)
        if req.stream:
            return await self._chat_stream(ctx, req, raw)

        def estimate(parsed: dict[str, Any] | None) -> TokenUsage:
            text = _message_text(parsed) if parsed else ""
            return TokenUsage(prompt=count_chat_prompt(req.model, req.messages), completion=count_text(req.model, text))

        return await self._call_json(ctx, "/chat/completions", raw, estimate)

    async def embeddings(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_embeddings(body)
        self.authorize(ctx.principal, req.model)
        ctx = replace(ctx, model=req.model)
        return await self._call_json(
            ctx, "/embeddings", raw, lambda _: TokenUsage(prompt=count_embedding_input(req.model, req.input))
        )

    async def _call_json(
        self,
        ctx: CallContext,
        path: str,
        raw: bytes,
        estimate: Callable[[dict[str, Any] | None], TokenUsage],
    ) -> Response:
        response = await self._send(ctx, path, raw, stream=False)
        upstream_id = response.headers.get("x-request-id")
        try:
            parsed = json.loads(response.content)
            block = parsed.get("usage")
        except (ValueError, AttributeError):
            await self._settle(ctx, estimate(None), status.STATUS_UPSTREAM_ERROR, 502, upstream_id, "bad_json")
            raise UpstreamError("The upstream API returned a malformed response.") from None
        if isinstance(block, dict):
            await self._settle(ctx, tokens_from_usage(block), status.STATUS_OK, 200, upstream_id)
        else:
            await self._settle(ctx, estimate(parsed), status.STATUS_OK, 200, upstream_id, source=False)
        return Response(response.content, media_type=response.headers.get("content-type", "application/json"))

    async def _chat_stream(self, ctx: CallContext, req: ChatRequest, raw: bytes) -> Response:
        if not req.client_wants_usage:
            # Always ask for usage: billing depends on it. The client never sees the extra event.
            body = dict(req.body)
            body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        response = await self._send(ctx, "/chat/completions", raw, stream=True)
        upstream_id = response.headers.get("x-request-id")

        async def finish(result: RelayResult) -> None:
            if result.usage is not None:
                tokens, upstream_counted = tokens_from_usage(result.usage), True
            else:
                completion = count_text(req.model, result.relayed_text())
                tokens = TokenUsage(prompt=count_chat_prompt(req.model, req.messages), completion=completion)
                upstream_counted = False
            outcome = {
                OUTCOME_COMPLETED: status.STATUS_OK,
                OUTCOME_DISCONNECTED: status.STATUS_CLIENT_DISCONNECTED,
            }.get(result.outcome, status.STATUS_STREAM_ERROR)
            await self._settle(ctx, tokens, outcome, 200, upstream_id, source=upstream_counted)

        return SSERelay(response, keep_usage_event=req.client_wants_usage, headers={}, on_finish=finish)

    async def _send(self, ctx: CallContext, path: str, raw: bytes, stream: bool) -> httpx.Response:
        try:
            return await self.upstream.send("POST", path, raw, stream=stream)
        except GatewayError as exc:
            await self._settle(ctx, TokenUsage(), status.STATUS_UPSTREAM_ERROR, exc.status_code, None, exc.code)
            raise

    async def _settle(
        self,
        ctx: CallContext,
        tokens: TokenUsage,
        outcome: str,
        http_status: int,
        upstream_id: str | None,
        error_code: str | None = None,
        *,
        source: bool = True,
    ) -> None:
        settlement = usage.Settlement(
            request_id=ctx.request_id,
            endpoint=ctx.endpoint,
            model=ctx.model,
            tokens=tokens,
            cost_micros=self.prices.cost_micros(ctx.model, tokens),
            status=outcome,
            http_status=http_status,
            latency_ms=int((time.perf_counter() - ctx.started) * 1000),
            usage_source=status.SOURCE_UPSTREAM if source else status.SOURCE_ESTIMATED,
            upstream_request_id=upstream_id,
            error_code=error_code,
        )
        await usage.settle(self.sessionmaker, ctx.principal, settlement)


def _message_text(parsed: dict[str, Any]) -> str:
    parts: list[str] = []
    for choice in parsed.get("choices") or ():
        message = choice.get("message") or {} if isinstance(choice, dict) else {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "".join(parts)
