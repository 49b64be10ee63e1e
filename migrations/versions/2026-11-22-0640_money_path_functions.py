"""money path functions: one round trip to reserve, one to settle (PostgreSQL only)

The reservation and the settlement each used to be five or six statements, every one a round
trip holding the budget row lock. As server-side functions they are one call each; SQLite, the
single-process default, keeps the statement-by-statement path in app/spend/repository.py.

Revision ID: 5b1e0c7d9a31
Revises: 4d34ad3bac2b
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b1e0c7d9a31"
down_revision: str | None = "4d34ad3bac2b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERIOD_START = """
CREATE OR REPLACE FUNCTION tollgate_period_start(p_period text, p_tz text, p_now timestamptz)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
    -- Local calendar boundaries, converted back to an instant (DST-safe); weeks start on Monday.
    SELECT CASE p_period
        WHEN 'lifetime' THEN timestamptz '1970-01-01 00:00:00+00'
        WHEN 'daily' THEN date_trunc('day', p_now AT TIME ZONE p_tz) AT TIME ZONE p_tz
        WHEN 'weekly' THEN date_trunc('week', p_now AT TIME ZONE p_tz) AT TIME ZONE p_tz
        WHEN 'monthly' THEN date_trunc('month', p_now AT TIME ZONE p_tz) AT TIME ZONE p_tz
    END
$$;
"""

RESERVE = """
CREATE OR REPLACE FUNCTION tollgate_reserve(
    p_request_id text, p_key_id text, p_user_id text, p_team_id text, p_endpoint text, p_model text,
    p_prompt_tokens integer, p_in_rate numeric, p_out_rate numeric, p_max_cap integer, p_min_cap integer,
    p_choices integer, p_has_output boolean, p_now timestamptz, p_ttl_s double precision
) RETURNS TABLE (outcome text, budget_id text, cap integer, amount bigint, budget_ids text[])
LANGUAGE plpgsql AS $$
DECLARE
    b record;
    ids text[] := '{}';
    starts timestamptz[] := '{}';
    room bigint;
    headroom bigint;
    tightest text;
    prompt_cost numeric := p_prompt_tokens * p_in_rate;
    v_cap integer := 0;
    v_amount bigint;
    updated integer;
BEGIN
    -- Lock every applicable budget in id order: concurrent reservations queue, never deadlock.
    FOR b IN
        SELECT id, limit_micros, spent_micros, reserved_micros, period_start,
               tollgate_period_start(period, timezone, p_now) AS cur
        FROM budgets
        WHERE (scope = 'key' AND scope_id = p_key_id) OR (scope = 'user' AND scope_id = p_user_id)
           OR (scope = 'team' AND scope_id = p_team_id)
        ORDER BY id
        FOR UPDATE
    LOOP
        ids := ids || b.id;
        starts := starts || b.cur;
        room := b.limit_micros - b.reserved_micros
                - CASE WHEN b.period_start < b.cur THEN 0 ELSE b.spent_micros END;
        IF headroom IS NULL OR room < headroom THEN
            headroom := room;
            tightest := b.id;
        END IF;
    END LOOP;
    IF headroom IS NULL THEN
        RETURN QUERY SELECT 'unbudgeted'::text, NULL::text, NULL::integer, 0::bigint, ids;
        RETURN;
    END IF;
    IF p_has_output THEN
        v_cap := p_max_cap;
        IF p_out_rate > 0 THEN
            v_cap := LEAST(v_cap, floor((headroom - prompt_cost) / (p_out_rate * p_choices)));
        END IF;
    END IF;
    v_amount := ceil(prompt_cost + GREATEST(v_cap, 0)::numeric * p_choices * p_out_rate);
    -- Refused only when not even a minimal answer (or, without output, the input) is affordable.
    IF v_amount > headroom OR (p_has_output AND v_cap < p_min_cap) THEN
        RETURN QUERY SELECT 'refused'::text, tightest, NULL::integer, 0::bigint, ids;
        RETURN;
    END IF;
    -- The invariant, enforced by the statement that moves the money.
    UPDATE budgets AS bu
    SET spent_micros = CASE WHEN bu.period_start < s.cur THEN 0 ELSE bu.spent_micros END,
        period_start = GREATEST(bu.period_start, s.cur),
        reserved_micros = bu.reserved_micros + v_amount,
        updated_at = p_now
    FROM unnest(ids, starts) AS s(id, cur)
    WHERE bu.id = s.id
      AND CASE WHEN bu.period_start < s.cur THEN 0 ELSE bu.spent_micros END
          + bu.reserved_micros + v_amount <= bu.limit_micros;
    GET DIAGNOSTICS updated = ROW_COUNT;
    IF updated <> cardinality(ids) THEN
        RAISE EXCEPTION 'tollgate_reserve: budget changed under lock';
    END IF;
    INSERT INTO budget_leases (request_id, budget_ids, amount_micros, api_key_id, user_id, team_id, endpoint,
                               model, prompt_tokens, output_cap, expires_at, created_at)
    VALUES (p_request_id, to_jsonb(ids), v_amount, p_key_id, p_user_id, p_team_id, p_endpoint, p_model,
            p_prompt_tokens, v_cap * p_choices, p_now + make_interval(secs => p_ttl_s), p_now);
    RETURN QUERY SELECT 'reserved'::text, tightest, v_cap, v_amount, ids;
END
$$;
"""

SETTLE = """
CREATE OR REPLACE FUNCTION tollgate_settle(p_request_id text, p_actual bigint, p_now timestamptz, p_usage jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    lease record;
    bid text;
BEGIN
    -- Whoever deletes the lease owns it: a retried settlement, or one racing the reaper, finds nothing.
    DELETE FROM budget_leases WHERE request_id = p_request_id RETURNING amount_micros, budget_ids INTO lease;
    IF FOUND THEN
        FOR bid IN SELECT value FROM jsonb_array_elements_text(lease.budget_ids) ORDER BY value LOOP
            UPDATE budgets
            SET spent_micros = CASE WHEN period_start < tollgate_period_start(period, timezone, p_now)
                                    THEN 0 ELSE spent_micros END + p_actual,
                period_start = GREATEST(period_start, tollgate_period_start(period, timezone, p_now)),
                reserved_micros = GREATEST(reserved_micros - lease.amount_micros, 0),
                updated_at = p_now
            WHERE id = bid;
        END LOOP;
    END IF;
    INSERT INTO usage_records (request_id, api_key_id, user_id, team_id, endpoint, model, prompt_tokens,
                               cached_tokens, completion_tokens, reasoning_tokens, cost_micros, status,
                               http_status, latency_ms, upstream_request_id, usage_source, error_code, created_at)
    SELECT r.request_id, r.api_key_id, r.user_id, r.team_id, r.endpoint, r.model, r.prompt_tokens,
           r.cached_tokens, r.completion_tokens, r.reasoning_tokens, r.cost_micros, r.status,
           r.http_status, r.latency_ms, r.upstream_request_id, r.usage_source, r.error_code, r.created_at
    FROM jsonb_populate_record(NULL::usage_records, p_usage) AS r
    ON CONFLICT (request_id) DO NOTHING;
    RETURN FOUND;
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '5s'")
    for ddl in (PERIOD_START, RESERVE, SETTLE):
        op.execute(ddl)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS tollgate_settle(text, bigint, timestamptz, jsonb)")
    op.execute(
        "DROP FUNCTION IF EXISTS tollgate_reserve(text, text, text, text, text, text, integer, numeric, numeric, "
        "integer, integer, integer, boolean, timestamptz, double precision)"
    )
    op.execute("DROP FUNCTION IF EXISTS tollgate_period_start(text, text, timestamptz)")
