"""The Batch API through Tollgate: created from the caller's own batch file, reserved at batch
prices for the worst case of every line, followed until upstream finishes it, then settled.

The reservation is a budget lease that lives as long as the batch (its 24 h window plus a grace),
not the few seconds of a request's lease, so the reaper charges it only if nobody settles the
batch by then; ``spent + reserved <= limit`` holds all along. No DB session is held across an
upstream call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.responses import Response

from app.api_keys.schemas import Principal
from app.audit.schemas import ObjectAction
from app.audit.support import Target, reach_upstream
from app.batches.repository import BatchRepository
from app.batches.schemas import BatchCreate, InputTally, parse_create
from app.batches.settlement import BATCH_ENDPOINT, BatchRef, BatchSettler
from app.config import Settings
from app.db import DB_ERRORS
from app.errors import GatewayError, InvalidRequest, NotFound, ServiceUnavailable
from app.files.repository import FileRepository
from app.files.service import file_not_found, file_path
from app.gateway.service import CallContext, Gateway
from app.gateway.upstream import UPSTREAM_IO_ERRORS, Reply, path_id
from app.kit.db_types import utcnow
from app.kit.jsonl import numbered_lines
from app.kit.pagination import PageParams, cursor_anchor
from app.models import Batch
from app.models import usage_record as ledger
from app.spend.service import Estimate, Reservation
from app.usage.pricing import TokenUsage
from app.usage.service import Settlement
from app.vector_stores.schemas import list_of, upstream_object

log = logging.getLogger("tollgate.batches")
_WINDOW = timedelta(hours=24)


def batch_not_found(batch_id: str) -> NotFound:
    return NotFound(f"No batch found with id '{batch_id}'.", param="batch_id")


def relay(reply: Reply) -> Response:
    return Response(reply.content, media_type="application/json")


class Batches:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: Gateway,
        settler: BatchSettler,
        settings: Settings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.gateway = gateway
        self.upstream = gateway.upstream
        self.spend = gateway.meter.spend
        self.settler = settler
        self.settings = settings

    async def create(self, ctx: CallContext, raw: bytes, body: dict[str, Any]) -> Response:
        req = parse_create(body)
        await self._input_file(ctx.principal, req.input_file_id)
        tally = await self._tally(req)
        assert tally.model is not None
        self.gateway.authorize(ctx.principal, tally.model)
        tokens = TokenUsage(prompt=tally.prompt_tokens, completion=tally.output_tokens)
        micros = self.settler.cost_micros(tally.model, tokens)
        estimate = Estimate.fixed(tally.model, BATCH_ENDPOINT, micros, tally.prompt_tokens)
        reservation = await self.spend.reserve(ctx.principal, ctx.request_id, estimate)
        # Shielded: a batch created upstream must get its owner row and long lease even if the
        # client hangs up meanwhile, or it would run (and bill) with nobody to settle it.
        with anyio.CancelScope(shield=True):
            try:
                reply = await self.upstream.request("POST", "/batches", raw)
                created = upstream_object(reply.content)
            except GatewayError as exc:
                self._release(ctx, reservation, tally.model, exc.status_code, exc.code)
                raise
            await self._record(ctx, reservation, tally.model, req, created)
        log.info("batch %s created: %d requests, %d micro-dollars reserved", created["id"], tally.requests, micros)
        return relay(reply)

    async def _input_file(self, principal: Principal, file_id: str) -> None:
        async with self.sessionmaker() as session:
            row = await FileRepository(session).get_owned(file_id, principal.user_id)
        if row is None:
            raise file_not_found(file_id)
        if row.purpose != "batch":
            raise InvalidRequest(
                f"File {file_id} has purpose '{row.purpose}'; a batch's input file needs purpose 'batch'.",
                param="input_file_id",
                code="invalid_file_purpose",
            )

    async def _tally(self, req: BatchCreate) -> InputTally:
        """Reads the input file from upstream, line by line, into the batch's worst case."""
        spend = self.settings.spend
        tally = InputTally(req.endpoint, spend.model_max_output_tokens, spend.default_max_output_tokens)
        response = await self.upstream.download(file_path(req.input_file_id) + "/content")
        try:
            async for number, line in numbered_lines(_body(response), self.settings.batches.max_line_bytes):
                tally.add(number, line)
        except UPSTREAM_IO_ERRORS as exc:
            raise ServiceUnavailable("Tollgate could not read the batch's input file from upstream.") from exc
        finally:
            response.close()
        if tally.requests == 0:
            raise InvalidRequest("The input file holds no requests.", param="input_file_id")
        return tally

    async def _record(
        self, ctx: CallContext, reservation: Reservation, model: str, req: BatchCreate, created: dict[str, Any]
    ) -> None:
        """The owner row, and the lease moved to the batch's own deadline, in one transaction. If
        that fails the batch is cancelled upstream: nobody could see or settle it."""
        expires = _expiry(created)
        row = Batch(
            id=created["id"],
            user_id=ctx.principal.user_id,
            api_key_id=ctx.principal.key_id,
            team_id=ctx.principal.team_id,
            request_id=ctx.request_id,
            model=model,
            endpoint=req.endpoint,
            input_file_id=req.input_file_id,
            reserved_micros=reservation.amount,
            status=str(created.get("status") or "validating")[:20],
            snapshot=created,
            lease_expires_at=expires + timedelta(seconds=self.settings.batches.settle_grace_s),
        )
        try:
            async with self.sessionmaker.begin() as session:
                await BatchRepository(session).create(row)
                await self.spend.hold(session, ctx.request_id, row.lease_expires_at)
        except DB_ERRORS:
            log.exception("could not record batch %s; cancelling it upstream", row.id)
            with suppress(GatewayError):
                await self.upstream.request("POST", f"/batches/{path_id(row.id)}/cancel")
            self._release(ctx, reservation, model, 503, "not_recorded")
            raise ServiceUnavailable("Tollgate could not record the batch, so it was cancelled; retry later.") from None

    def _release(self, ctx: CallContext, reservation: Reservation, model: str, status: int, code: str | None) -> None:
        """Nothing ran upstream: settling at zero gives the reservation back."""
        settlement = Settlement(
            request_id=ctx.request_id,
            endpoint=BATCH_ENDPOINT,
            model=model,
            tokens=TokenUsage(),
            cost_micros=0,
            status=ledger.STATUS_UPSTREAM_ERROR,
            http_status=status,
            latency_ms=0,
            usage_source=ledger.SOURCE_ESTIMATED,
            error_code=code,
        )
        self.spend.settle(ctx.principal, reservation, settlement)

    async def _owned(
        self, principal: Principal, batch_id: str, action: ObjectAction = "object.read"
    ) -> tuple[str, BatchRef | None]:
        """The batch's id and what settling it needs, once the caller may reach it: its own, or for
        an admin any (support access, audited). A batch made upstream outside Tollgate has no
        reservation here, so an admin reaches it with nothing to settle."""
        async with self.sessionmaker.begin() as session:
            repo = BatchRepository(session)
            find = lambda owner: repo.get_owned(batch_id, owner)  # noqa: E731 - one use
            found = await reach_upstream(session, principal, Target("batch", batch_id), find, action)
            ref = BatchRef.of(found.row) if found is not None and found.row is not None else None
        if found is None:
            raise batch_not_found(batch_id)
        return found.id, ref

    async def retrieve(self, principal: Principal, batch_id: str) -> Response:
        upstream_id, batch = await self._owned(principal, batch_id)
        reply = await self.upstream.request("GET", f"/batches/{path_id(upstream_id)}")
        if batch is not None:
            await self.settler.settle_quietly(batch, upstream_object(reply.content))
        return relay(reply)

    async def cancel(self, principal: Principal, batch_id: str) -> Response:
        upstream_id, batch = await self._owned(principal, batch_id, "object.updated")
        reply = await self.upstream.request("POST", f"/batches/{path_id(upstream_id)}/cancel")
        if batch is not None:
            await self.settler.settle_quietly(batch, upstream_object(reply.content))
        return relay(reply)

    async def list(self, owner_id: str, params: PageParams) -> Response:
        """``owner_id``'s batches (the caller's, or the user an admin asked for) as Tollgate last
        saw them (the poller keeps them current)."""
        async with self.sessionmaker() as session:
            repo = BatchRepository(session)
            anchor = await cursor_anchor(params, lambda id_: repo.get_owned(id_, owner_id), "batch")
            rows, has_more = await repo.page(owner_id, params, anchor)
        return list_of([row.snapshot for row in rows], has_more)


def _expiry(created: dict[str, Any]) -> datetime:
    value = created.get("expires_at")
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return utcnow() + _WINDOW


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_chunked(256 * 1024):
        yield chunk
