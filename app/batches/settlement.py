"""Settling batches: when upstream says a batch has ended (completed, or expired, cancelled or
failed with what it finished), its output file's usage is charged at batch prices, the rest of
its reservation is released, and its output and error files become the owner's.

Settling happens once however many look: the poller on every replica, and any client's
retrieve. The batch row is claimed in the same transaction that takes the lease and writes the
ledger row, so only the claimant charges. No DB session is held across an upstream call.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.batches.repository import BatchRepository
from app.batches.schemas import TERMINAL, add_usage, output_usage
from app.config import BatchSettings
from app.db import DB_ERRORS
from app.errors import GatewayError, UpstreamError
from app.files.repository import FileRepository
from app.files.schemas import UpstreamFile, parse_upstream
from app.files.service import file_path, record_file
from app.gateway.upstream import UPSTREAM_IO_ERRORS, Upstream, path_id
from app.kit.db_types import utcnow
from app.kit.jsonl import numbered_lines
from app.models import Batch
from app.models import usage_record as ledger
from app.spend.service import Payer, SpendService
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.service import Settlement
from app.vector_stores.schemas import upstream_object

log = logging.getLogger("tollgate.batches")
BATCH_ENDPOINT = "batches"
_POLL_PAGE = 100


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What settling needs of a batch row, detached from its session."""

    id: str
    user_id: str
    payer: Payer
    request_id: str
    model: str
    endpoint: str
    created_at: datetime
    settled: bool = False

    @classmethod
    def of(cls, row: Batch) -> BatchRef:
        payer = Payer(row.api_key_id, row.user_id, row.team_id)
        settled = row.settled_at is not None
        return cls(row.id, row.user_id, payer, row.request_id, row.model, row.endpoint, row.created_at, settled)


class BatchSettler:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        upstream: Upstream,
        spend: SpendService,
        prices: PriceBook,
        settings: BatchSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream
        self.spend = spend
        self.prices = prices
        self.settings = settings

    def cost_micros(self, model: str, tokens: TokenUsage) -> int:
        """The regular price less the batch discount, rounded up to a whole micro-dollar."""
        full = self.prices.cost_micros(model, tokens)
        return -(-full * (100 - self.settings.discount_percent) // 100)

    async def poll_once(self) -> int:
        """Looks up every unsettled batch upstream and settles those that ended; returns how
        many this call settled. Safe on every replica at once: settling is claimed."""
        settled, after = 0, None
        while True:
            async with self.sessionmaker() as session:
                rows = await BatchRepository(session).unsettled(after, _POLL_PAGE)
                batches = [BatchRef.of(r) for r in rows]
            for batch in batches:
                try:
                    reply = await self.upstream.request("GET", f"/batches/{path_id(batch.id)}")
                    settled += await self.observe(batch, upstream_object(reply.content))
                except GatewayError as exc:
                    log.warning("batch %s not followed this time: %s", batch.id, exc.code or type(exc).__name__)
            if len(batches) < _POLL_PAGE:
                return settled
            after = (batches[-1].created_at, batches[-1].id)

    async def observe(self, batch: BatchRef, obj: dict[str, Any]) -> bool:
        """Records what upstream said of the batch, and settles it if it has ended."""
        status = str(obj.get("status") or "")
        if status not in TERMINAL:
            async with self.sessionmaker.begin() as session:
                await BatchRepository(session).observe(batch.id, status[:20], obj)
            return False
        return await self.settle(batch, obj)

    async def settle(self, batch: BatchRef, obj: dict[str, Any]) -> bool:
        tokens = await self._usage(batch, obj.get("output_file_id"))
        files = [await self._file(f) for f in (obj.get("output_file_id"), obj.get("error_file_id")) if f]
        status = str(obj["status"])
        settlement = Settlement(
            request_id=batch.request_id,
            endpoint=BATCH_ENDPOINT,
            model=batch.model,
            tokens=tokens,
            cost_micros=self.cost_micros(batch.model, tokens),
            status=ledger.STATUS_OK,
            http_status=200,
            latency_ms=min(int((utcnow() - batch.created_at).total_seconds() * 1000), 2**31 - 1),
            usage_source=ledger.SOURCE_UPSTREAM,
            upstream_request_id=batch.id,
            error_code=None if status == "completed" else status,
        )
        async with self.sessionmaker.begin() as session:
            if not await BatchRepository(session).claim(batch.id, status, obj, utcnow()):
                return False  # another replica, or a client's retrieve, settled it
            for file in files:
                if await FileRepository(session).get_by_id(file.id) is None:
                    await record_file(session, batch.user_id, file)
            await self.spend.settle_in(session, batch.payer, settlement)
        log.info("batch %s settled (%s): %d micro-dollars", batch.id, status, settlement.cost_micros)
        return True

    async def settle_quietly(self, batch: BatchRef, obj: dict[str, Any]) -> None:
        """A client's retrieve settles a finished batch too, but never fails for it: the poller retries."""
        if batch.settled:
            return  # its output was read and charged already; nothing to look at again
        try:
            await self.observe(batch, obj)
        except (GatewayError, *DB_ERRORS) as exc:
            log.warning("batch %s not settled on retrieve: %s", batch.id, type(exc).__name__)

    async def _usage(self, batch: BatchRef, file_id: Any) -> TokenUsage:
        """The summed usage of every answered line of the output file, read as it streams."""
        total = TokenUsage()
        if not isinstance(file_id, str) or not file_id:
            return total
        response = await self.upstream.download(file_path(file_id) + "/content")
        try:
            async for _, line in numbered_lines(_body(response), self.settings.max_line_bytes):
                total = add_usage(total, output_usage(batch.endpoint, line))
        except UPSTREAM_IO_ERRORS as exc:
            raise UpstreamError("Could not read the batch's output file.") from exc
        finally:
            response.close()
        return total

    async def _file(self, file_id: Any) -> UpstreamFile:
        reply = await self.upstream.request("GET", file_path(str(file_id)))
        return parse_upstream(UpstreamFile, reply.content)


async def _body(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_chunked(256 * 1024):
        yield chunk
