"""usage request ids: one ledger row per request id, whoever writes it

The partitioned ledger's unique constraint must carry created_at, so it no longer stops a
second row for the same request written at another time (a replica's storage charge, a second
settlement of a batch or a fine-tuning job, a settle that lost the race to the reaper). Every
writer now registers the request id in this narrow, unpartitioned table in the same
transaction and writes the row only if the id was new; tollgate_settle_batch does the same.
Retention deletes the ids of the months whose partitions it drops.

Revision ID: c3f1a9d27b54
Revises: b7d41e9c2a60
Create Date: 2026-12-01 20:30:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision: str = "c3f1a9d27b54"
down_revision: str | None = "b7d41e9c2a60"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SETTLE_BATCH = """
CREATE OR REPLACE FUNCTION tollgate_settle_batch(p_items jsonb, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids text[];
    v_reserved bigint[];
    v_actual bigint[];
    written integer;
BEGIN
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
        GROUP BY b.value
    )
    SELECT array_agg(id ORDER BY id), array_agg(reserved ORDER BY id), array_agg(actual ORDER BY id)
    INTO v_ids, v_reserved, v_actual
    FROM per_budget;
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
    WITH candidates AS (
        SELECT DISTINCT ON (r.request_id) r.*
        FROM jsonb_array_elements(p_items) AS i, jsonb_populate_record(NULL::usage_records, i->'usage') AS r
        ORDER BY r.request_id
    ), registered AS (
        INSERT INTO usage_request_ids (request_id, created_at)
        SELECT c.request_id, c.created_at FROM candidates AS c ORDER BY c.request_id
        ON CONFLICT (request_id) DO NOTHING
        RETURNING request_id
    ), written_rows AS (
        INSERT INTO usage_records (request_id, api_key_id, user_id, team_id, endpoint, model, prompt_tokens,
                                   cached_tokens, completion_tokens, reasoning_tokens, cost_micros, status,
                                   http_status, latency_ms, upstream_request_id, usage_source, error_code,
                                   created_at, upstream, unit, units)
        SELECT r.request_id, r.api_key_id, r.user_id, r.team_id, r.endpoint, r.model, r.prompt_tokens,
               r.cached_tokens, r.completion_tokens, r.reasoning_tokens, r.cost_micros, r.status,
               r.http_status, r.latency_ms, r.upstream_request_id, r.usage_source, r.error_code,
               r.created_at, r.upstream, r.unit, r.units
        FROM candidates AS r JOIN registered USING (request_id)
        RETURNING *
    ), summed AS (
        INSERT INTO usage_rollup (grain, hour, api_key_id, model, endpoint, status, user_id, team_id, requests,
                                  prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_micros)
        SELECT {grain_select}, count(*), sum(w.prompt_tokens), sum(w.cached_tokens), sum(w.completion_tokens),
               sum(w.reasoning_tokens), sum(w.cost_micros)
        FROM written_rows AS w, {grains}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ORDER BY {grain_order}
        ON CONFLICT (grain, hour, api_key_id, model, endpoint, status, user_id, team_id) DO UPDATE
        SET requests = usage_rollup.requests + excluded.requests,
            prompt_tokens = usage_rollup.prompt_tokens + excluded.prompt_tokens,
            cached_tokens = usage_rollup.cached_tokens + excluded.cached_tokens,
            completion_tokens = usage_rollup.completion_tokens + excluded.completion_tokens,
            reasoning_tokens = usage_rollup.reasoning_tokens + excluded.reasoning_tokens,
            cost_micros = usage_rollup.cost_micros + excluded.cost_micros
        RETURNING 1
    )
    SELECT count(*) INTO written FROM written_rows;
    RETURN written;
END
$$;
"""

_DROP_ROLLUP = "            DELETE FROM usage_rollup WHERE hour >= v_from AND hour < v_to;\n"
_DROP_IDS = "            DELETE FROM usage_request_ids WHERE created_at >= v_from AND created_at < v_to;\n"


def _partitioned() -> ModuleType:
    """The migration before this one, whose function texts this one extends or restores."""
    path = Path(__file__).with_name("2026-12-01-1930_partitioned_usage_and_rollup.py")
    spec = importlib.util.spec_from_file_location("_partitioned_usage", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def settle_batch_sql() -> str:
    """This revision's tollgate_settle_batch, as later revisions restore or extend it."""
    before = _partitioned()
    hour = "date_trunc('hour', w.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    return SETTLE_BATCH.format(
        grain_select=before._dims("w.", hour),
        grains=before.GRAINS,
        grain_order=before._dims("w.", hour, ' COLLATE "C"'),
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "usage_request_ids",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_usage_request_ids")),
    )
    op.create_index("ix_usage_request_ids_created_at", "usage_request_ids", ["created_at"])
    op.execute(
        "INSERT INTO usage_request_ids (request_id, created_at) "
        "SELECT request_id, min(created_at) FROM usage_records GROUP BY request_id"
    )
    if postgres:
        before = _partitioned()
        op.execute(settle_batch_sql())
        assert _DROP_ROLLUP in before.DROP_FN
        op.execute(before.DROP_FN.replace(_DROP_ROLLUP, _DROP_ROLLUP + _DROP_IDS))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        before = _partitioned()
        op.execute(before._settle_batch())
        op.execute(before.DROP_FN)
    op.drop_index("ix_usage_request_ids_created_at", table_name="usage_request_ids")
    op.drop_table("usage_request_ids")
