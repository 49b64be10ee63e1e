"""Vector store storage, metered per store per UTC day, as OpenAI bills it (per GB-day).

A periodic job, run on every replica: each store not yet charged today has its ``usage_bytes``
read from upstream and charged to the budgets of the key, user and team that created it, as one
ledger row whose request id names the store and the day. Whoever writes that row applies the
charge, so replicas racing on the same store charge it once.

What this approximates: the size is sampled once a day (at the day's first run after midnight
UTC), not integrated over the day; a store created and deleted between two runs is not charged;
OpenAI's first GB free is organization-wide and is not deducted from anyone.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import VectorStoreSettings
from app.errors import GatewayError, NotFound
from app.gateway.upstream import Upstream, path_id
from app.kit.db_types import utcnow
from app.models import usage_record as ledger
from app.spend.service import Payer, SpendService
from app.usage.pricing import TokenUsage
from app.usage.service import Settlement
from app.vector_stores.repository import VectorStoreRepository
from app.vector_stores.schemas import upstream_object, usage_bytes_of

log = logging.getLogger("tollgate.vector_stores")

STORAGE_ENDPOINT = "vector_stores.storage"
STORAGE_MODEL = "vector-store-storage"
_BYTES_PER_GB = Decimal(10**9)


@dataclass(frozen=True, slots=True)
class _Due:
    store_id: str
    payer: Payer


def storage_request_id(store_id: str, day: date) -> str:
    """One per store per day: the ledger's unique request id makes the charge idempotent."""
    digest = hashlib.sha256(store_id.encode()).hexdigest()[:32]
    return f"vs-storage-{day.isoformat()}-{digest}"


class StorageMeter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        upstream: Upstream,
        spend: SpendService,
        settings: VectorStoreSettings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.upstream = upstream
        self.spend = spend
        self.micros_per_byte = settings.storage_price_per_gb_day * 1_000_000 / _BYTES_PER_GB

    def cost_micros(self, usage_bytes: int) -> int:
        return math.ceil(usage_bytes * self.micros_per_byte)

    async def run_once(self, day: date | None = None, batch: int = 100) -> int:
        """Charges every store not yet charged for ``day`` (today, UTC); returns how many this
        call charged. Stores upstream could not answer for are left for the next run."""
        day = day or utcnow().date()
        charged, skipped = 0, set[str]()
        while True:
            async with self.sessionmaker() as session:
                rows = await VectorStoreRepository(session).unmetered(day, batch + len(skipped))
                due = [_Due(r.id, Payer(r.api_key_id, r.user_id, r.team_id)) for r in rows if r.id not in skipped]
            if not due:
                return charged
            for store in due:
                outcome = await self._meter(store, day)
                if outcome is None:
                    skipped.add(store.store_id)
                charged += bool(outcome)

    async def _meter(self, store: _Due, day: date) -> bool | None:
        """True when this call charged the store, False when it needed no charge (or another
        replica made it), None when upstream could not say how large the store is."""
        try:
            obj = upstream_object(
                (await self.upstream.request("GET", f"/vector_stores/{path_id(store.store_id)}")).content
            )
        except NotFound:
            obj = None  # gone upstream (expired by its expires_after): nothing more to bill
        except GatewayError as exc:
            log.warning("vector store %s not metered this run: %s", store.store_id, exc.code or type(exc).__name__)
            return None
        usage = usage_bytes_of(obj) if obj is not None else 0
        async with self.sessionmaker.begin() as session:
            repo = VectorStoreRepository(session)
            if obj is None:
                await repo.remove(store.store_id)
                return False
            await repo.refresh(store.store_id, obj, usage)
            await repo.mark_metered(store.store_id, day)
            if usage == 0:
                return False
            return await self.spend.charge_in(session, store.payer, self._settlement(store, day, usage))

    def _settlement(self, store: _Due, day: date, usage: int) -> Settlement:
        return Settlement(
            request_id=storage_request_id(store.store_id, day),
            endpoint=STORAGE_ENDPOINT,
            model=STORAGE_MODEL,
            tokens=TokenUsage(),
            cost_micros=self.cost_micros(usage),
            status=ledger.STATUS_OK,
            http_status=200,
            latency_ms=0,
            usage_source=ledger.SOURCE_UPSTREAM,
            upstream_request_id=store.store_id,
            unit=ledger.UNIT_BYTE_DAY,
            units=usage,
        )
