"""The Responses API through Tollgate. A create is metered like a chat call (reserve, call,
settle) and its id recorded as the caller's; every other route first checks that the id is the
caller's. Responses are stored upstream; Tollgate keeps only owners and context sizes.

No DB session is held across an upstream call: the owner checks and the ownership record each
use their own short session.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach_upstream
from app.conversations.repository import ConversationRepository
from app.db import DB_ERRORS
from app.errors import NotFound
from app.gateway.metering import Admission
from app.gateway.service import CallContext, Gateway, stream_status, with_fields
from app.gateway.streaming import RESPONSES, RelayResult, SSERelay
from app.gateway.upstream import Reply, forward_query, path_id
from app.kit.tokens import aestimate_responses_prompt, count_text
from app.models import ResponseRecord
from app.responses.repository import ResponseRepository
from app.responses.schemas import ResponseCreate, output_text, parse_create, tokens_from_response_usage
from app.spend.service import Estimate
from app.usage.pricing import TokenUsage

log = logging.getLogger("tollgate.responses")

_READ_QUERY = frozenset({"include", "include[]"})
_LIST_QUERY = frozenset({"limit", "order", "after", "include", "include[]"})


def response_not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param="response_id")


def conversation_not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation found with id '{conversation_id}'.", param="conversation_id")


def relay(reply: Reply) -> Response:
    return Response(reply.content, media_type=reply.headers.get("content-type", "application/json"))


class Responses:
    def __init__(self, gateway: Gateway, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.gateway = gateway
        self.sessionmaker = sessionmaker

    async def create(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_create(body)
        self.gateway.authorize(ctx.principal, req.model)
        # Checked before anything is reserved: another tenant's id costs nothing and reveals nothing.
        context = await self._owned_context(ctx.principal.user_id, req)
        ctx = replace(ctx, model=req.model)
        prompt = await aestimate_responses_prompt(req.model, body) + context
        window = self.gateway.prices.context_window(req.model)
        prompt = min(prompt, window) if window else prompt
        estimate = Estimate(req.model, ctx.endpoint, prompt, requested_cap=req.max_output_tokens)
        admission = await self.gateway.meter.admit(ctx.principal, ctx.request_id, estimate)
        cap = admission.reservation.output_cap
        if cap is not None and cap != req.max_output_tokens:
            # The cap that was reserved is the cap upstream must enforce.
            body, raw = with_fields(body, raw, {"max_output_tokens": cap})
        if req.stream:
            return await self._stream(ctx, admission, req, raw, prompt)

        def estimate_usage(parsed: dict[str, Any] | None) -> TokenUsage:
            return TokenUsage(prompt=prompt, completion=count_text(req.model, output_text(parsed)))

        response = await self.gateway.call_json(
            ctx, admission, "/responses", raw, estimate_usage, tokens_of=tokens_from_response_usage, stateful=True
        )
        parsed = json.loads(bytes(response.body))
        usage = parsed.get("usage")
        tokens = tokens_from_response_usage(usage) if isinstance(usage, dict) else estimate_usage(parsed)
        await self._record(ctx.principal.user_id, parsed.get("id"), req, tokens)
        return response

    async def _stream(
        self, ctx: CallContext, admission: Admission, req: ResponseCreate, raw: bytes, prompt: int
    ) -> Response:
        upstream = await self.gateway.send(ctx, admission, self.gateway.upstream.stream("/responses", raw))
        upstream_id = upstream.headers.get("x-request-id")

        async def finish(result: RelayResult) -> None:
            """Upstream's usage when the terminal event came; else tiktoken's count of what was delivered."""
            if result.usage is not None:
                tokens, counted = tokens_from_response_usage(result.usage), True
            else:
                tokens = TokenUsage(prompt=prompt, completion=count_text(req.model, result.relayed_text()))
                counted = False
            row_status = stream_status(result.outcome)
            await self.gateway.settle(ctx, admission, tokens, row_status, 200, upstream_id, source=counted)
            await self._record(ctx.principal.user_id, _created_id(result.events()), req, tokens)

        return SSERelay(upstream, keep_usage_event=True, headers=admission.headers, on_finish=finish, dialect=RESPONSES)

    async def _owned_context(self, user_id: str, req: ResponseCreate) -> int:
        """The context tokens upstream will add from the caller's previous response or
        conversation; 404 when either is not the caller's."""
        if req.previous_response_id is None and req.conversation_id is None:
            return 0
        async with self.sessionmaker() as session:
            if req.previous_response_id is not None:
                previous = await ResponseRepository(session).get_owned(req.previous_response_id, user_id)
                if previous is None:
                    raise NotFound(
                        f"Previous response with id '{req.previous_response_id}' not found.",
                        param="previous_response_id",
                    )
                return previous.context_tokens
            assert req.conversation_id is not None
            conversation = await ConversationRepository(session).get_owned(req.conversation_id, user_id)
        if conversation is None:
            raise conversation_not_found(req.conversation_id)
        return conversation.context_tokens

    async def _record(self, user_id: str, response_id: Any, req: ResponseCreate, tokens: TokenUsage) -> None:
        """Records the caller as the response's owner, once the call is settled. A failure here
        costs the caller later access to the response, never its answer or the ledger."""
        if not isinstance(response_id, str) or not response_id:
            return
        context = tokens.prompt + tokens.completion
        try:
            async with self.sessionmaker.begin() as session:
                record = ResponseRecord(id=response_id, user_id=user_id, context_tokens=context)
                await ResponseRepository(session).create(record)
                if req.conversation_id is not None:
                    await ConversationRepository(session).raise_context(req.conversation_id, context)
        except DB_ERRORS as exc:
            log.error("could not record the owner of response %s: %s", response_id, type(exc).__name__)

    async def _owned(self, principal: Principal, response_id: str, action: ObjectAction = "object.read") -> str:
        """The response id as an upstream path segment, once the caller may reach it: its own, or
        for an admin any (support access, audited), even one made upstream outside Tollgate."""
        async with self.sessionmaker.begin() as session:
            repo = ResponseRepository(session)
            found = await reach_upstream(
                session,
                principal,
                Target("response", response_id),
                lambda owner: repo.get_owned(response_id, owner),
                action,
            )
        if found is None:
            raise response_not_found(response_id)
        return path_id(found.id)

    async def retrieve(self, principal: Principal, response_id: str, query: Iterable[tuple[str, str]]) -> Response:
        path = await self._owned(principal, response_id)
        upstream = self.gateway.upstream
        return relay(await upstream.request("GET", f"/responses/{path}{forward_query(query, _READ_QUERY)}"))

    async def delete(self, principal: Principal, response_id: str) -> Response:
        path = await self._owned(principal, response_id, "object.deleted")
        reply = await self.gateway.upstream.request("DELETE", f"/responses/{path}")
        async with self.sessionmaker.begin() as session:
            await ResponseRepository(session).delete_by_id(response_id)
        return relay(reply)

    async def cancel(self, principal: Principal, response_id: str) -> Response:
        path = await self._owned(principal, response_id, "object.updated")
        return relay(await self.gateway.upstream.request("POST", f"/responses/{path}/cancel"))

    async def input_items(self, principal: Principal, response_id: str, query: Iterable[tuple[str, str]]) -> Response:
        path = await self._owned(principal, response_id)
        query_string = forward_query(query, _LIST_QUERY)
        return relay(await self.gateway.upstream.request("GET", f"/responses/{path}/input_items{query_string}"))


def _created_id(events: Iterable[dict[str, Any]]) -> str | None:
    """The response id, from the first event that carries the response (``response.created``)."""
    for event in events:
        response = event.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            return str(response["id"])
    return None
