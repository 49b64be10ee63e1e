"""Legacy completions and moderations, on the chat path's machinery.

Legacy completions are metered exactly like chat: the prompt counted with tiktoken, the output
cap reserved and enforced (``max_tokens``; OpenAI's own default of 16 when the client set none),
usage from upstream, streams relayed with the usage event asked for. Moderations are free
upstream, so they reserve nothing, but they are authenticated, model-checked, rate limited and
written to the ledger at cost 0.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.responses import Response

from app.gateway.schemas import parse_completions, parse_moderations
from app.gateway.service import CallContext, Gateway, model_not_found, with_fields
from app.kit.tokens import acount_embedding_input, acount_texts, count_text
from app.spend.service import Estimate
from app.usage.pricing import TokenUsage

# What upstream generates when a legacy completion sets no max_tokens.
LEGACY_DEFAULT_MAX_TOKENS = 16
# Upstream's model when a moderation request names none; the key must allow it.
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


async def create_completion(gateway: Gateway, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
    req = parse_completions(body)
    gateway.authorize(ctx.principal, req.model)
    ctx = replace(ctx, model=req.model)
    # The suffix is one more text of the prompt: counted in the same round trip.
    prompt_tokens = await acount_embedding_input(req.model, [req.prompt, body.get("suffix") or ""])
    estimate = Estimate(
        model=req.model,
        endpoint=ctx.endpoint,
        prompt_tokens=prompt_tokens,
        requested_cap=body.get("max_tokens") or LEGACY_DEFAULT_MAX_TOKENS,
        choices=req.choices,
    )
    admission = await gateway.meter.admit(ctx.principal, ctx.request_id, estimate)
    cap = admission.reservation.output_cap
    if cap is not None and cap != body.get("max_tokens"):
        # The cap that was reserved is the cap upstream must enforce.
        body, raw = with_fields(body, raw, {"max_tokens": cap})
    if req.stream:
        return await gateway.relay_stream(
            ctx, admission, "/completions", body, raw, req.client_wants_usage, lambda: prompt_tokens
        )

    def estimate_usage(parsed: dict[str, Any] | None) -> TokenUsage:
        return TokenUsage(prompt=prompt_tokens, completion=count_text(req.model, _choice_texts(parsed)))

    return await gateway.call_json(ctx, admission, "/completions", raw, estimate_usage)


async def create_moderation(gateway: Gateway, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
    req = parse_moderations(body, DEFAULT_MODERATION_MODEL)
    if not ctx.principal.may_use(req.model):
        raise model_not_found(req.model)
    ctx = replace(ctx, model=req.model)
    # Not billed upstream, so nothing to price: the tokens are recorded for visibility (and TPM).
    prompt_tokens = sum(await acount_texts(req.model, list(_moderation_texts(req.input))))
    estimate = Estimate.fixed(req.model, ctx.endpoint, 0, prompt_tokens=prompt_tokens)
    admission = await gateway.meter.admit(ctx.principal, ctx.request_id, estimate)
    return await gateway.call_json(
        ctx, admission, "/moderations", raw, lambda _: TokenUsage(prompt=prompt_tokens), free=True
    )


def _choice_texts(parsed: dict[str, Any] | None) -> str:
    choices = (parsed or {}).get("choices") or ()
    return "".join(c["text"] for c in choices if isinstance(c, dict) and isinstance(c.get("text"), str))


def _moderation_texts(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    texts = [item for item in items if isinstance(item, str)]
    texts += [item["text"] for item in items if isinstance(item, dict) and isinstance(item.get("text"), str)]
    return texts
