"""settle batch charges budgets last, and takes its leases by index

A settle batch locked its budget rows first and then wrote the ledger, the request-id registry
and three grains of rollup upserts, holding those locks all the while; every reservation on the
same budgets waited for the whole batch. It now takes its leases first (whoever deletes a lease
owns it), writes the ledger and the rollup, and only then locks and charges the budgets, so a
budget row is held from its UPDATE to the commit, which is asynchronous (revision 5e2b8c1d9a47).

The lock order of every money transaction is now: leases, then the ledger and rollup, then
budgets in id order. The reaper and the SQLAlchemy settlement paths follow it too
(app/spend/service.py), so no two of them can wait on each other in a cycle. Reservations lock
budgets only. Before, charge_in (storage) wrote the ledger first and the settle batch locked
budgets first: a deadlock was possible between the two on the same user's rollup row.

The leases are deleted by ``request_id = ANY(array)`` instead of a join to the JSON items,
which the generic plan the money pool asks for (app/db.py) answered with a scan of every lease.

Revision ID: 9d3a6f2e1c85
Revises: 5e2b8c1d9a47
Create Date: 2026-12-05 23:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "9d3a6f2e1c85"
down_revision: str | None = "5e2b8c1d9a47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DECLARE = "\n    v_ids text[];\n"
_DECLARE_IDS = "\n    v_rids text[];\n    v_actuals bigint[];\n    v_ids text[];\n"
_LEASES_BY_JOIN = """
    WITH items AS (
        SELECT i->>'request_id' AS request_id, (i->>'actual')::bigint AS actual
        FROM jsonb_array_elements(p_items) AS i
    ), gone AS (
        DELETE FROM budget_leases AS l USING items
        WHERE l.request_id = items.request_id
        RETURNING l.request_id, l.budget_ids, l.amount_micros, items.actual
    ), per_budget AS (
        SELECT b.value AS id, sum(gone.amount_micros)::bigint AS reserved, sum(gone.actual)::bigint AS actual
        FROM gone, jsonb_array_elements_text(gone.budget_ids) AS b
"""
_LEASES_BY_INDEX = """
    -- The request ids as an array: the leases are then taken by index, whatever the plan.
    SELECT array_agg(i->>'request_id'), array_agg((i->>'actual')::bigint)
    INTO v_rids, v_actuals
    FROM jsonb_array_elements(p_items) AS i;
    WITH gone AS (
        DELETE FROM budget_leases AS l
        WHERE l.request_id = ANY(v_rids)
        RETURNING l.request_id, l.budget_ids, l.amount_micros
    ), items AS (
        SELECT DISTINCT ON (t.request_id) t.request_id, t.actual
        FROM unnest(v_rids, v_actuals) AS t(request_id, actual)
        ORDER BY t.request_id
    ), per_budget AS (
        SELECT b.value AS id, sum(gone.amount_micros)::bigint AS reserved, sum(items.actual)::bigint AS actual
        FROM gone JOIN items USING (request_id), jsonb_array_elements_text(gone.budget_ids) AS b
"""
_CHARGE = """
    IF v_ids IS NOT NULL THEN
        PERFORM 1 FROM budgets WHERE id = ANY(v_ids) ORDER BY id FOR UPDATE;
        UPDATE budgets AS bu
        SET spent_micros = CASE WHEN bu.period_start < tollgate_period_start(bu.period, bu.timezone, p_now)
                                THEN 0 ELSE bu.spent_micros END + c.actual,
            period_start = GREATEST(bu.period_start, tollgate_period_start(bu.period, bu.timezone, p_now)),
            reserved_micros = GREATEST(bu.reserved_micros - c.reserved, 0),
            updated_at = p_now
        FROM unnest(v_ids, v_reserved, v_actual) AS c(id, reserved, actual)
        WHERE bu.id = c.id;
    END IF;
"""
_RETURN = "\n    RETURN written;\n"
_CHARGE_LAST = "\n    -- Last: from here to the commit, reservations on these budgets wait." + _CHARGE[:-1] + _RETURN


def _previous() -> ModuleType:
    """The revision before this one, whose function text this one edits or restores."""
    path = Path(__file__).with_name("2026-12-04-0200_settle_batch_async_commit.py")
    spec = importlib.util.spec_from_file_location("_settle_batch_async_commit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settle_batch_sql() -> str:
    """This revision's tollgate_settle_batch, as later revisions restore or extend it."""
    text: str = _previous().settle_batch_sql()
    edits = ((_DECLARE, _DECLARE_IDS), (_LEASES_BY_JOIN, _LEASES_BY_INDEX), (_CHARGE, "\n"), (_RETURN, _CHARGE_LAST))
    for old, new in edits:
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(settle_batch_sql())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(_previous().settle_batch_sql())
