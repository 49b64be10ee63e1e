"""usage units: calls billed by the piece (images, seconds of audio, characters) record the count

Two nullable columns on usage_records (NULL for calls billed by tokens only), and the batched
settlement function on PostgreSQL taught to write them.

Revision ID: 6e1a2b3c4d5f
Revises: 6a1e0c2b9d47
Create Date: 2026-11-22 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6e1a2b3c4d5f"
down_revision: str | None = "6a1e0c2b9d47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The function of revision 6a1e0c2b9d47 with the ledger columns as a parameter, so that the
# downgrade restores exactly the previous column list.
SETTLE_BATCH = """
CREATE OR REPLACE FUNCTION tollgate_settle_batch(p_items jsonb, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_ids text[];
    v_reserved bigint[];
    v_actual bigint[];
    taken integer;
BEGIN
    WITH items AS (
        SELECT i->>'request_id' AS request_id, (i->>'actual')::bigint AS actual
        FROM jsonb_array_elements(p_items) AS i
    ), gone AS (
        DELETE FROM budget_leases AS l USING items
        WHERE l.request_id = items.request_id
        RETURNING l.budget_ids, l.amount_micros, items.actual
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
    INSERT INTO usage_records (request_id, api_key_id, user_id, team_id, endpoint, model, prompt_tokens,
                               cached_tokens, completion_tokens, reasoning_tokens, cost_micros, status,
                               http_status, latency_ms, upstream_request_id, usage_source, error_code,
                               created_at{columns})
    SELECT r.request_id, r.api_key_id, r.user_id, r.team_id, r.endpoint, r.model, r.prompt_tokens,
           r.cached_tokens, r.completion_tokens, r.reasoning_tokens, r.cost_micros, r.status,
           r.http_status, r.latency_ms, r.upstream_request_id, r.usage_source, r.error_code,
           r.created_at{values}
    FROM jsonb_array_elements(p_items) AS i, jsonb_populate_record(NULL::usage_records, i->'usage') AS r
    ON CONFLICT (request_id) DO NOTHING;
    GET DIAGNOSTICS taken = ROW_COUNT;
    RETURN taken;
END
$$;
"""


def _lock_timeout() -> None:
    # Fail fast rather than queue behind live traffic while holding an exclusive lock.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")


def upgrade() -> None:
    _lock_timeout()
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unit", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("units", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SETTLE_BATCH.format(columns=", upstream, unit, units", values=", r.upstream, r.unit, r.units"))


def downgrade() -> None:
    _lock_timeout()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(SETTLE_BATCH.format(columns=", upstream", values=", r.upstream"))
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("units")
        batch_op.drop_column("unit")
