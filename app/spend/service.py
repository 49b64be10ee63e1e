"""The money path. This is the only code that moves budget counters.

reserve():  worst-case cost on every applicable budget, one transaction, fixed lock order,
            plus a lease row; refused (429) if any budget cannot take it.
settle():   one transaction: take the lease, write the ledger row, charge actual cost. Every
            money transaction locks leases, then ledger and rollup, then budgets in id order:
            no cycles, and a budget row is held only from its charge to the commit.
reap_once(): expired leases (crashed or unreachable settlers) are charged at the reserved
            amount and marked estimated, so a crash never under-bills nor locks a budget.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Principal
from app.config import SpendSettings
from app.db import DB_ERRORS
from app.errors import ServiceUnavailable
from app.kit.batching import BatchCall, GroupCommit
from app.kit.db_types import utcnow
from app.kit.periods import period_bounds
from app.metrics import service as metrics
from app.models import Budget
from app.models import usage_record as ledger
from app.spend.leases import new_lease, reaped_values
from app.spend.limits import exceeded, headroom, tightest
from app.spend.repository import (
    BudgetRepository,
    LeaseRepository,
    MoneyFunctions,
    PendingSettlement,
    ReserveArgs,
    ReserveOutcome,
)
from app.usage.pricing import PriceBook, TokenUsage
from app.usage.repository import UsageRepository
from app.usage.service import Settlement, record_values

log = logging.getLogger("tollgate.spend")


@dataclass(slots=True)
class Reservation:
    request_id: str
    budget_ids: list[str] = field(default_factory=list)
    amount: int = 0
    # The output cap upstream must enforce; None when no budget applies (nothing to enforce).
    output_cap: int | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    model: str
    endpoint: str
    prompt_tokens: int
    requested_cap: int | None  # the client's own max tokens, if it set one
    choices: int = 1
    has_output: bool = True
    # Calls priced by the piece (images, audio, free moderations): the most the call can cost,
    # reserved as it is. No output cap applies; build these with ``Estimate.fixed``.
    fixed_micros: int | None = None

    @classmethod
    def fixed(cls, model: str, endpoint: str, micros: int, prompt_tokens: int = 0) -> Estimate:
        """``prompt_tokens`` is only what rate limits count (TPM)."""
        return cls(model, endpoint, prompt_tokens, requested_cap=None, has_output=False, fixed_micros=micros)


@dataclass(frozen=True, slots=True)
class Payer:
    """Whose budgets a charge made outside a request (a batch settling, storage) goes to."""

    key_id: str
    user_id: str
    team_id: str | None


class SpendService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        prices: PriceBook,
        settings: SpendSettings,
        functions: MoneyFunctions | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.prices = prices
        self.settings = settings
        # PostgreSQL: reservations and settlements are server-side calls, each shared by the
        # requests that arrive (or finish) together. SQLite: statements.
        self.functions = functions
        self.in_flight: set[str] = set()
        self.settlements: GroupCommit[PendingSettlement] = GroupCommit(
            self._write_settlements, linger_s=settings.settle_linger_s
        )
        self._reservations: BatchCall[ReserveArgs, ReserveOutcome] = BatchCall(
            self._reserve_batch, on_orphan=self._release_orphan
        )

    async def reserve(self, principal: Principal, request_id: str, estimate: Estimate) -> Reservation:
        try:
            if self.functions is not None:
                reservation = await self._reserve_in_database(principal, request_id, estimate)
            else:
                async with self.sessionmaker() as session:
                    reservation = await self._reserve(session, principal, request_id, estimate)
                    await session.commit()
        except DB_ERRORS as exc:
            log.error("cannot confirm a reservation: %s", type(exc).__name__)
            raise ServiceUnavailable(
                "Tollgate cannot confirm your budget right now, so the request was not sent. Retry shortly."
            ) from exc
        if reservation.budget_ids:
            self.in_flight.add(request_id)
        return reservation

    async def _reserve_in_database(self, principal: Principal, request_id: str, estimate: Estimate) -> Reservation:
        prompt_tokens = estimate.prompt_tokens
        if estimate.fixed_micros is not None:
            # The database function reserves prompt x input rate: one "token" at the fixed amount
            # reserves exactly that amount (the lease then records one prompt token).
            prompt_tokens, in_rate, out_rate = 1, Decimal(estimate.fixed_micros), Decimal(0)
        else:
            in_rate, out_rate = self.prices.worst_case_rates(estimate.model)
        args = ReserveArgs(
            request_id,
            principal.key_id,
            principal.user_id,
            principal.team_id,
            estimate.endpoint,
            estimate.model,
            prompt_tokens,
            in_rate,
            out_rate,
            self.output_ceiling(estimate),
            self.settings.min_output_tokens,
            estimate.choices,
            estimate.has_output,
        )
        outcome = await self._reservations(args)
        if outcome.outcome == "refused":
            async with self.sessionmaker() as session:
                budget = await BudgetRepository(session).get_by_id(outcome.budget_id)
            assert budget is not None
            raise exceeded(budget, utcnow())
        if outcome.outcome == "unbudgeted":
            return Reservation(request_id)
        cap = outcome.cap if estimate.has_output else None
        return Reservation(request_id, outcome.budget_ids, outcome.amount, cap)

    async def _reserve_batch(self, items: list[ReserveArgs]) -> list[ReserveOutcome]:
        assert self.functions is not None
        metrics.RESERVATION_BATCH.observe(len(items))
        return await self.functions.reserve_batch(items, utcnow(), self.settings.lease_ttl_s)

    def _release_orphan(self, args: ReserveArgs, outcome: ReserveOutcome) -> None:
        """The caller went away while its reservation was being made: give the money back."""
        if outcome.outcome != "reserved":
            return
        settlement = Settlement(
            request_id=args.request_id,
            endpoint=args.endpoint,
            model=args.model,
            tokens=TokenUsage(),
            cost_micros=0,
            status=ledger.STATUS_CLIENT_DISCONNECTED,
            http_status=499,
            latency_ms=0,
            usage_source=ledger.SOURCE_ESTIMATED,
            error_code="cancelled",
        )
        values = record_values(args.key_id, args.user_id, args.team_id, settlement)
        self._submit(PendingSettlement(args.request_id, 0, values))

    def output_ceiling(self, estimate: Estimate) -> int:
        """The cap before the budget has its say: the client's own, else the model's or the default."""
        return estimate.requested_cap or min(
            self.settings.default_max_output_tokens,
            self.settings.model_max_output_tokens.get(estimate.model, self.settings.default_max_output_tokens),
        )

    async def _reserve(
        self, session: AsyncSession, principal: Principal, request_id: str, estimate: Estimate
    ) -> Reservation:
        repo = BudgetRepository(session)
        budgets = await repo.applicable(principal.key_id, principal.user_id, principal.team_id, lock=True)
        if not budgets:
            return Reservation(request_id)
        now = utcnow()
        cap = self._output_cap(estimate, budgets, now)
        amount = self._worst_case(estimate, cap)
        for budget in budgets:
            start = period_bounds(budget.period, budget.timezone, now)[0]
            if not await repo.try_reserve(budget.id, amount, start):
                await session.rollback()
                raise exceeded(budget, now)
        ids = [b.id for b in budgets]
        session.add(new_lease(principal, request_id, estimate, ids, amount, cap, now, self.settings.lease_ttl_s))
        return Reservation(request_id, ids, amount, cap if estimate.has_output else None)

    def worst_case(self, estimate: Estimate) -> int:
        """The most a call can cost with no budget lowering its output cap."""
        return self._worst_case(estimate, self.output_ceiling(estimate) if estimate.has_output else 0)

    def _worst_case(self, estimate: Estimate, cap: int) -> int:
        if estimate.fixed_micros is not None:
            return estimate.fixed_micros
        # No cache discount: the reservation must cover the most the call can cost.
        completion = cap * estimate.choices if estimate.has_output else 0
        return self.prices.cost_micros(estimate.model, TokenUsage(prompt=estimate.prompt_tokens, completion=completion))

    def _output_cap(self, estimate: Estimate, budgets: Sequence[Budget], now: datetime) -> int:
        """The largest output cap that is allowed and affordable on every budget."""
        if not estimate.has_output:
            if self._worst_case(estimate, 0) > headroom(budgets, now):
                raise exceeded(tightest(budgets, now), now)
            return 0
        ceiling = self.output_ceiling(estimate)
        room = headroom(budgets, now)
        low, high = 0, ceiling  # binary search: prices may be tiered, so no closed form
        while low < high:
            mid = (low + high + 1) // 2
            if self._worst_case(estimate, mid) <= room:
                low = mid
            else:
                high = mid - 1
        if low < self.settings.min_output_tokens:
            raise exceeded(tightest(budgets, now), now)
        return low

    def settle(self, principal: Principal, reservation: Reservation, settlement: Settlement) -> None:
        """Queues the settlement; it is written (idempotently) with the others that finish meanwhile,
        in one transaction, without the request waiting for it. The reservation holds the money
        until then, so budgets stay exact; if the write fails, the reaper charges the lease."""
        self.in_flight.discard(reservation.request_id)
        values = record_values(principal.key_id, principal.user_id, principal.team_id, settlement)
        if settlement.cost_micros > reservation.amount and reservation.budget_ids:
            log.warning("actual cost exceeded the reservation", extra={"model": settlement.model})
        self._submit(PendingSettlement(reservation.request_id, settlement.cost_micros, values))

    def _submit(self, item: PendingSettlement) -> None:
        metrics.PENDING_SETTLEMENTS.inc()
        self.settlements.submit(item)

    async def hold(self, session: AsyncSession, request_id: str, until: datetime, *, as_id: str | None = None) -> None:
        """For work that settles long after its request (a batch, a fine-tuning job): the lease
        leaves the heartbeat's care and lives until ``until``, when the reaper may charge it as
        estimated. ``as_id`` renames it to the id its settlement will carry (the job's)."""
        self.in_flight.discard(request_id)
        repo = LeaseRepository(session)
        if as_id is None:
            await repo.extend([request_id], until)
        else:
            await repo.rename(request_id, as_id, until)

    async def settle_in(self, session: AsyncSession, payer: Payer, settlement: Settlement) -> None:
        """Settles in the caller's transaction, beside what must happen exactly once with it. The
        lease is taken by whoever deletes it, and the ledger row is written once, so a settlement
        that races another (or the reaper) charges nothing twice."""
        lease = await LeaseRepository(session).take(settlement.request_id)
        values = record_values(payer.key_id, payer.user_id, payer.team_id, settlement)
        # Leases, then ledger and rollup, then budgets: the lock order of the settle batch.
        await UsageRepository(session).write([values])
        if lease is not None:
            charges: dict[str, tuple[int, int]] = {}
            _add_charge(charges, lease.budget_ids, lease.amount_micros, settlement.cost_micros)
            await _charge(session, charges)

    async def charge_in(self, session: AsyncSession, payer: Payer, settlement: Settlement) -> bool:
        """A cost incurred without a reservation (storage, billed after the fact): charged to
        every budget of ``payer`` by whoever writes its ledger row, so once per request id. It is
        charged even past a budget's limit: upstream bills it whatever the budget says."""
        values = record_values(payer.key_id, payer.user_id, payer.team_id, settlement)
        if not await UsageRepository(session).write([values]):
            return False
        budgets = await BudgetRepository(session).applicable(payer.key_id, payer.user_id, payer.team_id)
        await _charge(session, {b.id: (0, settlement.cost_micros) for b in budgets})
        return True

    async def flushed(self) -> None:
        """Waits for this process's queued settlements: reads of spend then include every
        request already answered here."""
        await self.settlements.wait_idle()

    async def _write_settlements(self, items: list[PendingSettlement]) -> None:
        metrics.SETTLEMENT_BATCH.observe(len(items))
        try:
            await self._write_batch(items)
        except DB_ERRORS as exc:
            metrics.SETTLEMENT_FAILURES.inc(len(items))
            log.error("settling %d requests failed, the reaper will charge them: %s", len(items), type(exc).__name__)
        else:
            metrics.record_ledger_rows(item.usage for item in items)
        finally:
            metrics.PENDING_SETTLEMENTS.dec(len(items))

    async def _write_batch(self, items: list[PendingSettlement]) -> None:
        if self.functions is not None:
            await self.functions.settle_batch(items, utcnow())
            return
        async with self.sessionmaker() as session:
            charges: dict[str, tuple[int, int]] = {}
            for item in items:
                lease = await LeaseRepository(session).take(item.request_id)
                if lease is not None:
                    _add_charge(charges, lease.budget_ids, lease.amount_micros, item.actual_micros)
            # Leases, then ledger and rollup, then budgets: the lock order of the settle batch.
            await UsageRepository(session).write([item.usage for item in items])
            await _charge(session, charges)
            await session.commit()

    async def settle_now(self, key_id: str, user_id: str, team_id: str | None, settlement: Settlement) -> None:
        """Writes one settlement at once and raises if it could not (background work that must
        know, such as a finished fine-tuning job). Idempotent like every settlement: a lease is
        taken once, and a ledger row with the same request id is written once."""
        values = record_values(key_id, user_id, team_id, settlement)
        await self._write_batch([PendingSettlement(settlement.request_id, settlement.cost_micros, values)])

    async def extend_hold(self, session: AsyncSession, hold_id: str, until: datetime) -> None:
        await LeaseRepository(session).extend([hold_id], until)

    async def reap_once(self, batch: int = 100) -> int:
        """Charges expired leases at their reserved amount. Safe on every replica at once:
        rows are claimed with SKIP LOCKED, and a lease is taken by whoever deletes it."""
        async with self.sessionmaker() as session:
            leases = await LeaseRepository(session).expired(utcnow(), batch)
            charges: dict[str, tuple[int, int]] = {}
            rows = []
            for lease in leases:
                _add_charge(charges, lease.budget_ids, lease.amount_micros, lease.amount_micros)
                rows.append(reaped_values(lease))
                await LeaseRepository(session).delete(lease)
            await session.flush()
            # Leases, then ledger and rollup, then budgets: the lock order of the settle batch.
            await UsageRepository(session).write(rows)
            await _charge(session, charges)
            await session.commit()
        if leases:
            metrics.LEASES_REAPED.inc(len(leases))
            metrics.record_ledger_rows(rows)
            log.warning("reaped %d expired leases", len(leases))
        return len(leases)

    async def heartbeat_once(self) -> None:
        if not self.in_flight:
            return
        async with self.sessionmaker() as session:
            expires = utcnow() + timedelta(seconds=self.settings.lease_ttl_s)
            await LeaseRepository(session).extend(sorted(self.in_flight), expires)
            await session.commit()

    async def budgets_of(self, principal: Principal) -> Sequence[Budget]:
        await self.flushed()
        async with self.sessionmaker() as session:
            return await BudgetRepository(session).applicable(principal.key_id, principal.user_id, principal.team_id)


def _add_charge(charges: dict[str, tuple[int, int]], budget_ids: Sequence[str], reserved: int, actual: int) -> None:
    for budget_id in budget_ids:
        before = charges.get(budget_id, (0, 0))
        charges[budget_id] = (before[0] + reserved, before[1] + actual)


async def _charge(session: AsyncSession, charges: dict[str, tuple[int, int]]) -> None:
    """Turns reservations into charges, summed per budget and applied in id order: the lock
    order of every money transaction, so charging many leases at once cannot deadlock."""
    repo = BudgetRepository(session)
    now = utcnow()
    for budget in await repo.by_ids(sorted(charges)):
        reserved, actual = charges[budget.id]
        await repo.charge(budget.id, reserved, actual, period_bounds(budget.period, budget.timezone, now)[0])
