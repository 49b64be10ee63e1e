"""reserve batch finds its budgets through the (scope, scope_id) index

tollgate_reserve_batch selected the batch's budgets with three ``scope = ... AND scope_id IN
(subquery)`` conditions joined by OR. PostgreSQL cannot turn an OR of sublinks into index
lookups, so every reservation read the whole budgets table: about 20 ms per call with 200,000
budgets, each call holding its row locks meanwhile. The batch's key, user and team ids are now
gathered into three arrays first; ``scope = 'key' AND scope_id = ANY(keys)`` (and the same for
users and teams) is answered by uq_budgets_scope_period, one lookup per id, whatever plan the
function's statement is given. Nothing else in the function changes.

Revision ID: 4b8e2d7c1f93
Revises: 9d3a6f2e1c85
Create Date: 2026-12-06 00:00:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "4b8e2d7c1f93"
down_revision: str | None = "9d3a6f2e1c85"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DECLARE = """
    b_id text[];
"""
_DECLARE_IDS = """
    b_id text[];
    v_keys text[];
    v_users text[];
    v_teams text[];
"""
_LOCK = """
    -- Locked once, in id order (the order every money transaction uses): no deadlocks.
"""
_LOCK_BY_IDS = """
    -- The batch's ids as arrays: each scope's condition below is then one index lookup per id.
    SELECT array_agg(x->>'key_id'), array_agg(x->>'user_id'), array_agg(x->>'team_id')
    INTO v_keys, v_users, v_teams
    FROM jsonb_array_elements(p_items) AS x;
    -- Locked once, in id order (the order every money transaction uses): no deadlocks.
"""
_SCAN = """
        WHERE (b.scope = 'key' AND b.scope_id IN (SELECT x->>'key_id' FROM jsonb_array_elements(p_items) AS x))
           OR (b.scope = 'user' AND b.scope_id IN (SELECT x->>'user_id' FROM jsonb_array_elements(p_items) AS x))
           OR (b.scope = 'team' AND b.scope_id IN (SELECT x->>'team_id' FROM jsonb_array_elements(p_items) AS x))
"""
_LOOKUP = """
        WHERE (b.scope = 'key' AND b.scope_id = ANY(v_keys))
           OR (b.scope = 'user' AND b.scope_id = ANY(v_users))
           OR (b.scope = 'team' AND b.scope_id = ANY(v_teams))
"""


def _previous() -> ModuleType:
    """The revision that wrote the function, whose text this one edits or restores."""
    path = Path(__file__).with_name("2026-11-22-0830_batched_reservation.py")
    spec = importlib.util.spec_from_file_location("_batched_reservation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reserve_batch_sql() -> str:
    text: str = _previous().RESERVE_BATCH
    for old, new in ((_DECLARE, _DECLARE_IDS), (_LOCK, _LOCK_BY_IDS), (_SCAN, _LOOKUP)):
        assert text.count(old) == 1
        text = text.replace(old, new)
    return text


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(reserve_batch_sql())


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(_previous().RESERVE_BATCH)
