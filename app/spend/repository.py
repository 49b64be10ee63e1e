"""All SQL that touches budgets and leases. The money columns only ever move through the
conditional UPDATEs here (SQLite, the reaper) and the PL/pgSQL batch functions called by
MoneyFunctions (PostgreSQL's hot path), each applying the same arithmetic under row locks."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import asyncpg
from asyncpg.exceptions import InterfaceError
from sqlalchemy import ColumnElement, and_, case, delete, or_, select, update

from app.kit.repository import RepositoryBase
from app.models import Budget, BudgetLease


def _spent_in(period_start: datetime) -> ColumnElement[int]:
    """What the budget has spent in the period starting at ``period_start``: a row still on an
    older period counts as zero, which is how periods roll over without a background job."""
    return case((Budget.period_start < period_start, 0), else_=Budget.spent_micros)


class BudgetRepository(RepositoryBase[Budget]):
    model = Budget

    async def applicable(
        self, key_id: str, user_id: str, team_id: str | None, *, lock: bool = False
    ) -> Sequence[Budget]:
        """Ordered by id: every transaction locks budget rows in the same order, so two requests
        sharing budgets can never deadlock. Locked rows give the output cap a current view."""
        scopes = [and_(Budget.scope == "key", Budget.scope_id == key_id)]
        scopes.append(and_(Budget.scope == "user", Budget.scope_id == user_id))
        if team_id is not None:
            scopes.append(and_(Budget.scope == "team", Budget.scope_id == team_id))
        statement = select(Budget).where(or_(*scopes)).order_by(Budget.id)
        if lock:
            statement = statement.with_for_update()
        return await self.get_all(statement)

    async def by_ids(self, budget_ids: Sequence[str]) -> Sequence[Budget]:
        """In id order, the lock order every money transaction uses."""
        return await self.get_all(select(Budget).where(Budget.id.in_(budget_ids)).order_by(Budget.id))

    async def list_budgets(self, scope: str | None, scope_id: str | None) -> Sequence[Budget]:
        statement = select(Budget).order_by(Budget.scope, Budget.scope_id, Budget.period)
        if scope is not None:
            statement = statement.where(Budget.scope == scope)
        if scope_id is not None:
            statement = statement.where(Budget.scope_id == scope_id)
        return await self.get_all(statement)

    async def find(self, scope: str, scope_id: str, period: str) -> Budget | None:
        statement = select(Budget).where(Budget.scope == scope, Budget.scope_id == scope_id, Budget.period == period)
        return await self.get_one_or_none(statement)

    async def try_reserve(self, budget_id: str, amount: int, period_start: datetime) -> bool:
        """``spent + reserved + amount <= limit`` checked and applied in one statement: no
        check-then-write window, and PostgreSQL re-checks the condition on a concurrently
        updated row before applying it."""
        spent = _spent_in(period_start)
        statement = (
            update(Budget)
            .where(Budget.id == budget_id)
            .where(spent + Budget.reserved_micros + amount <= Budget.limit_micros)
            .values(
                spent_micros=spent,
                period_start=case((Budget.period_start < period_start, period_start), else_=Budget.period_start),
                reserved_micros=Budget.reserved_micros + amount,
            )
            .returning(Budget.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.execute(statement)).first() is not None

    async def charge(self, budget_id: str, reserved: int, actual: int, period_start: datetime) -> None:
        """Turns a reservation into a charge: reserved -= reserved, spent += actual."""
        spent = _spent_in(period_start)
        statement = (
            update(Budget)
            .where(Budget.id == budget_id)
            .values(
                spent_micros=spent + actual,
                period_start=case((Budget.period_start < period_start, period_start), else_=Budget.period_start),
                reserved_micros=case((Budget.reserved_micros >= reserved, Budget.reserved_micros - reserved), else_=0),
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)


class LeaseRepository(RepositoryBase[BudgetLease]):
    model = BudgetLease

    async def take(self, request_id: str) -> BudgetLease | None:
        """Deletes and returns the lease: whoever takes it (settlement or reaper) owns it, once."""
        statement = delete(BudgetLease).where(BudgetLease.request_id == request_id).returning(BudgetLease)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def expired(self, now: datetime, limit: int) -> Sequence[BudgetLease]:
        statement = (
            select(BudgetLease)
            .where(BudgetLease.expires_at < now)
            .order_by(BudgetLease.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self.get_all(statement)

    async def extend(self, request_ids: Sequence[str], expires_at: datetime) -> None:
        statement = (
            update(BudgetLease)
            .where(BudgetLease.request_id.in_(request_ids))
            .values(expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def rename(self, request_id: str, new_id: str, expires_at: datetime) -> None:
        statement = (
            update(BudgetLease)
            .where(BudgetLease.request_id == request_id)
            .values(request_id=new_id, expires_at=expires_at)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(statement)

    async def delete(self, lease: BudgetLease) -> None:
        await self.session.delete(lease)


class MoneyFunctions:
    """PostgreSQL's fast path: a batch of reservations, or of settlements, as one server-side
    call (the functions live in the migrations), sent in autocommit on a dedicated asyncpg pool.

    Not SQLAlchemy's pool: its checkout ping and its rollback on return were two extra round
    trips around every one-statement call. Each kind of call also keeps the connection it used
    (its lane): reservations and settlements are each sent one batch at a time, so a lane's
    next call finds its connection free, and skips the pool's acquire and release (a task and
    a shield per call: 11% of a worker's instructions per request when requests come one by one)."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float, statement_timeout_s: float) -> None:
        self.pool = pool
        self.acquire_timeout_s = acquire_timeout_s
        self.statement_timeout_s = statement_timeout_s
        self._held: dict[str, asyncpg.Connection] = {}

    async def reserve_batch(self, items: Sequence[ReserveArgs], now: datetime, ttl_s: float) -> list[ReserveOutcome]:
        """One transaction for the whole batch, each item decided in order; see tollgate_reserve_batch."""
        payload = json.dumps([item._asdict() for item in items], default=str)
        rows = await self._fetch("reserve", "SELECT * FROM tollgate_reserve_batch($1, $2, $3)", payload, now, ttl_s)
        outcomes = [ReserveOutcome(r["outcome"], r["budget_id"], r["cap"], r["amount"], r["budget_ids"]) for r in rows]
        assert [r["idx"] for r in rows] == list(range(len(items)))
        return outcomes

    async def settle_batch(self, items: Sequence[PendingSettlement], now: datetime) -> None:
        """One transaction for the whole batch; see tollgate_settle_batch."""
        payload = json.dumps(
            [{"request_id": i.request_id, "actual": i.actual_micros, "usage": i.usage} for i in items],
            default=str,
        )
        await self._fetch("settle", "SELECT tollgate_settle_batch($1, $2)", payload, now)

    async def _fetch(self, lane: str, query: str, *args: object) -> list[asyncpg.Record]:
        # Taken out while in use: a call that overlaps its lane's (tests, a second caller) gets
        # a connection of its own from the pool instead of interleaving on this one.
        conn = self._held.pop(lane, None)
        if conn is not None and not _usable(conn):
            await self._give_back(conn)  # closed under us: the pool refills its place
            conn = None
        if conn is None:
            conn = await self.pool.acquire(timeout=self.acquire_timeout_s)
        try:
            # Timed on this side too (once per batch): a dead connection must not hang requests.
            rows: list[asyncpg.Record] = await conn.fetch(query, *args, timeout=self.statement_timeout_s)
        except BaseException:
            await self._give_back(conn)  # reset by the pool, or replaced if the call broke it
            raise
        if lane in self._held:
            await self.pool.release(conn)
        else:
            self._held[lane] = conn
        return rows

    async def close(self) -> None:
        """Gives the lanes' connections back, then closes the pool (which waits for them)."""
        held, self._held = list(self._held.values()), {}
        for conn in held:
            await self._give_back(conn)
        await self.pool.close()

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        # A connection that closed has been taken back by the pool already; releasing it again
        # raises, and must not hide the error that closed it.
        with contextlib.suppress(InterfaceError):
            await self.pool.release(conn)


def _usable(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except InterfaceError:  # a pool's connection that closed is detached from it at once
        return False


@dataclass(frozen=True, slots=True)
class PendingSettlement:
    request_id: str
    actual_micros: int
    usage: dict[str, object]  # the ledger row


class ReserveArgs(NamedTuple):
    """One item of tollgate_reserve_batch (Decimal rates travel as exact decimal strings)."""

    request_id: str
    key_id: str
    user_id: str
    team_id: str | None
    endpoint: str
    model: str
    prompt_tokens: int
    in_rate: Decimal
    out_rate: Decimal
    max_cap: int
    min_cap: int
    choices: int
    has_output: bool


@dataclass(slots=True)
class ReserveOutcome:
    outcome: str  # "reserved" | "refused" | "unbudgeted"
    budget_id: str | None
    cap: int | None
    amount: int
    budget_ids: list[str]
