"""partitioned usage ledger and hourly rollup

PostgreSQL: usage_records becomes a table range-partitioned by month on created_at (one
partition per UTC month, plus a default partition so an insert never fails), its existing rows
moved across. Unique constraints must carry the partition key, so request_id is unique with
created_at; settlement stays idempotent because a budgeted request's row is written only by
whoever takes its lease (tollgate_settle_batch below, or the reaper) in the same transaction.

Both backends: usage_rollup sums the ledger per UTC hour and per every report dimension, kept in
step by the same transactions that write the ledger, and backfilled here from existing rows.

Revision ID: b7d41e9c2a60
Revises: 5ca45c51daf4
Create Date: 2026-12-01 19:30:00
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "b7d41e9c2a60"
down_revision: str | None = "5ca45c51daf4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEASURES = "prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_micros"
GRAIN = "grain, hour, api_key_id, model, endpoint, status, user_id, team_id"
# Every row is summed at three grains (app/models/usage_rollup.py): 0 keeps every dimension,
# 1 model/endpoint/status, 2 user/team; a dimension a grain drops is ''.
GRAINS = "(SELECT 0 AS grain UNION ALL SELECT 1 UNION ALL SELECT 2) AS g"
_KEEP = {
    "api_key_id": "0",
    "model": "0, 1",
    "endpoint": "0, 1",
    "status": "0, 1",
    "user_id": "0, 2",
    "team_id": "0, 2",
}


def _dims(prefix: str, hour: str, collate: str = "") -> str:
    """The grain's columns of a ledger row: dimensions it drops become ''."""
    out = ["g.grain", hour]
    for column in ("api_key_id", "model", "endpoint", "status", "user_id", "team_id"):
        value = f"coalesce({prefix}{column}, '')" if column == "team_id" else f"{prefix}{column}"
        out.append(f"CASE WHEN g.grain IN ({_KEEP[column]}) THEN {value} ELSE '' END{collate}")
    return ", ".join(out)

# Creates the partition of the month containing p_month (UTC) unless it exists. Rows of that
# month that fell into the default partition meanwhile move into it, so creating it late never
# fails. Serialised by an advisory lock: every replica runs this at start and hourly.
PARTITION_FN = """
CREATE OR REPLACE FUNCTION tollgate_usage_partition(p_month date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_from timestamptz := date_trunc('month', p_month::timestamp) AT TIME ZONE 'UTC';
    v_to timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month') AT TIME ZONE 'UTC';
    v_name text := 'usage_records_' || to_char(p_month, 'YYYYMM');
BEGIN
    PERFORM set_config('lock_timeout', '5s', true);
    PERFORM pg_advisory_xact_lock(hashtext('tollgate_usage_partitions'));
    IF to_regclass(v_name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE usage_records INCLUDING DEFAULTS)', v_name);
    EXECUTE format('WITH moved AS (DELETE FROM usage_records_default WHERE created_at >= $1 AND created_at < $2 '
                   'RETURNING *) INSERT INTO %I SELECT * FROM moved', v_name) USING v_from, v_to;
    EXECUTE format('ALTER TABLE usage_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   v_name, v_from, v_to);
    RETURN true;
END
$$;
"""

# Retention: drops every monthly partition that ends at or before p_before (never DELETEs from
# the ledger) and the rollup rows of those months with it, so rollup and ledger still agree.
DROP_FN = """
CREATE OR REPLACE FUNCTION tollgate_usage_drop_before(p_before timestamptz) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    part record;
    v_from timestamptz;
    v_to timestamptz;
    n integer := 0;
BEGIN
    PERFORM set_config('lock_timeout', '5s', true);
    PERFORM pg_advisory_xact_lock(hashtext('tollgate_usage_partitions'));
    FOR part IN
        SELECT c.relname FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_records'::regclass AND c.relname ~ '^usage_records_[0-9]{6}$'
        ORDER BY c.relname
    LOOP
        v_from := to_date(right(part.relname, 6), 'YYYYMM')::timestamp AT TIME ZONE 'UTC';
        v_to := (to_date(right(part.relname, 6), 'YYYYMM') + interval '1 month') AT TIME ZONE 'UTC';
        IF v_to <= p_before THEN
            DELETE FROM usage_rollup WHERE hour >= v_from AND hour < v_to;
            EXECUTE format('DROP TABLE %I', part.relname);
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;
"""

# A budgeted item ("budgeted": true) writes its ledger row only if this transaction took its
# lease: a retried settlement, or one that lost the race to the reaper, writes nothing. The
# rollup is incremented from exactly the rows inserted, in one fixed order ("C" collation, the
# order the Python writer sorts in) after the budget rows: the lock order of every writer.
SETTLE_BATCH = """
CREATE OR REPLACE FUNCTION tollgate_settle_batch(p_items jsonb, p_now timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_taken text[];
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
    SELECT (SELECT array_agg(request_id) FROM gone), array_agg(id ORDER BY id), array_agg(reserved ORDER BY id),
           array_agg(actual ORDER BY id)
    INTO v_taken, v_ids, v_reserved, v_actual
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
    WITH written_rows AS (
        INSERT INTO usage_records (request_id, api_key_id, user_id, team_id, endpoint, model, prompt_tokens,
                                   cached_tokens, completion_tokens, reasoning_tokens, cost_micros, status,
                                   http_status, latency_ms, upstream_request_id, usage_source, error_code,
                                   created_at, upstream, unit, units)
        SELECT r.request_id, r.api_key_id, r.user_id, r.team_id, r.endpoint, r.model, r.prompt_tokens,
               r.cached_tokens, r.completion_tokens, r.reasoning_tokens, r.cost_micros, r.status,
               r.http_status, r.latency_ms, r.upstream_request_id, r.usage_source, r.error_code,
               r.created_at, r.upstream, r.unit, r.units
        FROM jsonb_array_elements(p_items) AS i, jsonb_populate_record(NULL::usage_records, i->'usage') AS r
        WHERE NOT coalesce((i->>'budgeted')::boolean, false) OR r.request_id = ANY(coalesce(v_taken, '{{}}'))
        ON CONFLICT (request_id, created_at) DO NOTHING
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

INDEXES = {
    "ix_usage_records_api_key_id_created_at": "api_key_id, created_at",
    "ix_usage_records_user_id_created_at": "user_id, created_at",
    "ix_usage_records_team_id_created_at": "team_id, created_at",
    "ix_usage_records_created_at": "created_at",
}


def _settle_batch() -> str:
    hour = "date_trunc('hour', w.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    return SETTLE_BATCH.format(
        grain_select=_dims("w.", hour), grains=GRAINS, grain_order=_dims("w.", hour, ' COLLATE "C"')
    )


def _previous_settle_batch() -> str:
    """The function as revision 6e1a2b3c4d5f left it, for the downgrade."""
    path = Path(__file__).with_name("2026-11-22-1200_usage_units.py")
    spec = importlib.util.spec_from_file_location("_usage_units", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.SETTLE_BATCH
    return text.format(columns=", upstream, unit, units", values=", r.upstream, r.unit, r.units")


def _create_rollup(postgres: bool) -> None:
    # PostgreSQL: one partition per grain, so a report reading the small grains does not wade
    # through the pages of the large one (rows of one hour are written together).
    partitioned: dict[str, Any] = {"postgresql_partition_by": "LIST (grain)"} if postgres else {}
    op.create_table(
        "usage_rollup",
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("team_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "grain",
            "hour",
            "api_key_id",
            "model",
            "endpoint",
            "status",
            "user_id",
            "team_id",
            name=op.f("pk_usage_rollup"),
        ),
        **partitioned,
    )
    if postgres:
        for grain, name in ((0, "all"), (1, "model"), (2, "user")):
            op.execute(f"CREATE TABLE usage_rollup_{name} PARTITION OF usage_rollup FOR VALUES IN ({grain})")
    op.create_index("ix_usage_rollup_user_id_hour", "usage_rollup", ["grain", "user_id", "hour"])
    op.create_index("ix_usage_rollup_team_id_hour", "usage_rollup", ["grain", "team_id", "hour"])


def _backfill_rollup(hour_expr: str) -> None:
    sums = ", ".join(f"sum({m})" for m in MEASURES.split(", "))
    op.execute(
        f"INSERT INTO usage_rollup ({GRAIN}, requests, {MEASURES}) "
        f"SELECT {_dims('r.', hour_expr)}, count(*), {sums} "
        f"FROM usage_records AS r, {GRAINS} GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 2"
    )


def _partition_postgres() -> None:
    op.execute("ALTER SEQUENCE usage_records_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE usage_records RENAME TO usage_records_unpartitioned")
    op.execute("ALTER TABLE usage_records_unpartitioned RENAME CONSTRAINT pk_usage_records TO pk_usage_records_old")
    op.execute("ALTER TABLE usage_records_unpartitioned DROP CONSTRAINT uq_usage_records_request_id")
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute(
        "CREATE TABLE usage_records (LIKE usage_records_unpartitioned INCLUDING DEFAULTS, "
        "CONSTRAINT pk_usage_records PRIMARY KEY (id, created_at), "
        "CONSTRAINT uq_usage_records_request_id UNIQUE (request_id, created_at)) PARTITION BY RANGE (created_at)"
    )
    op.execute("CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT")
    op.execute(PARTITION_FN)
    op.execute(DROP_FN)
    # The months that have rows, and this month and the next two, before any row moves.
    op.execute(
        "SELECT tollgate_usage_partition(m) FROM ("
        "SELECT DISTINCT date_trunc('month', created_at AT TIME ZONE 'UTC')::date AS m FROM usage_records_unpartitioned "
        "UNION SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => k))::date "
        "FROM generate_series(0, 2) AS k) AS months ORDER BY m"
    )
    op.execute("INSERT INTO usage_records SELECT * FROM usage_records_unpartitioned")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_records ({columns})")
    op.execute("DROP TABLE usage_records_unpartitioned")
    op.execute("ALTER SEQUENCE usage_records_id_seq OWNED BY usage_records.id")


def _unpartition_postgres() -> None:
    op.execute("ALTER SEQUENCE usage_records_id_seq OWNED BY NONE")
    op.execute("ALTER TABLE usage_records RENAME TO usage_records_partitioned")
    op.execute("ALTER TABLE usage_records_partitioned RENAME CONSTRAINT pk_usage_records TO pk_usage_records_old")
    op.execute("ALTER TABLE usage_records_partitioned DROP CONSTRAINT uq_usage_records_request_id")
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.execute(
        "CREATE TABLE usage_records (LIKE usage_records_partitioned INCLUDING DEFAULTS, "
        "CONSTRAINT pk_usage_records PRIMARY KEY (id))"
    )
    op.execute("INSERT INTO usage_records SELECT * FROM usage_records_partitioned")
    op.execute("ALTER TABLE usage_records ADD CONSTRAINT uq_usage_records_request_id UNIQUE (request_id)")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_records ({columns})")
    op.execute("DROP TABLE usage_records_partitioned CASCADE")
    op.execute("ALTER SEQUENCE usage_records_id_seq OWNED BY usage_records.id")
    op.execute("DROP FUNCTION IF EXISTS tollgate_usage_partition(date)")
    op.execute("DROP FUNCTION IF EXISTS tollgate_usage_drop_before(timestamptz)")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        _partition_postgres()
        _create_rollup(postgres=True)
        _backfill_rollup("date_trunc('hour', r.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
        op.execute(_settle_batch())
        return
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint("uq_usage_records_request_id", type_="unique")
        batch_op.create_unique_constraint("uq_usage_records_request_id", ["request_id", "created_at"])
    _create_rollup(postgres=False)
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
    _backfill_rollup("strftime('%Y-%m-%d %H:00:00.000000', r.created_at)")


def downgrade() -> None:
    op.drop_index("ix_usage_rollup_team_id_hour", table_name="usage_rollup")
    op.drop_index("ix_usage_rollup_user_id_hour", table_name="usage_rollup")
    op.drop_table("usage_rollup")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SET LOCAL lock_timeout = '5s'")
        op.execute(_previous_settle_batch())
        _unpartition_postgres()
        return
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_constraint("uq_usage_records_request_id", type_="unique")
        batch_op.create_unique_constraint("uq_usage_records_request_id", ["request_id"])
