"""batched reservation: requests arriving together reserve in one transaction (PostgreSQL only)

Every reservation on a budget takes that budget's row lock until its commit is flushed to disk,
so one hot budget admitted only as many requests per second as the disk could flush commits.
The gateway now sends the reservations that arrive while one is in flight as one call: one lock
acquisition, one row version per budget, one insert of leases and one commit for the whole
batch. Each item is still decided in arrival order against what the items before it reserved,
by the same arithmetic as tollgate_reserve (which stays, for reference and for a downgrade).

Revision ID: 9d3a6b2c4e18
Revises: 7c2f4e9a1b05
Create Date: 2026-11-22 08:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "9d3a6b2c4e18"
down_revision: str | None = "7c2f4e9a1b05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE_BATCH = """
CREATE OR REPLACE FUNCTION tollgate_reserve_batch(p_items jsonb, p_now timestamptz, p_ttl_s double precision)
RETURNS TABLE (idx integer, outcome text, budget_id text, cap integer, amount bigint, budget_ids text[])
LANGUAGE plpgsql AS $$
DECLARE
    -- The budgets of the whole batch, in id order, and what each still has room for.
    b_id text[];
    b_scope text[];
    b_sid text[];
    b_room bigint[];
    b_cur timestamptz[];
    b_add bigint[];
    n integer;
    i integer;
    item record;
    k text;
    u text;
    t text;
    mine integer[];
    ids text[];
    headroom bigint;
    tightest text;
    prompt_cost numeric;
    v_out_rate numeric;
    v_choices integer;
    v_has_output boolean;
    v_cap integer;
    v_amount bigint;
    l_rid text[] := '{}';
    l_ids jsonb[] := '{}';
    l_amount bigint[] := '{}';
    l_key text[] := '{}';
    l_user text[] := '{}';
    l_team text[] := '{}';
    l_endpoint text[] := '{}';
    l_model text[] := '{}';
    l_prompt integer[] := '{}';
    l_cap integer[] := '{}';
BEGIN
    -- Locked once, in id order (the order every money transaction uses): no deadlocks.
    SELECT array_agg(s.id ORDER BY s.id), array_agg(s.scope ORDER BY s.id), array_agg(s.scope_id ORDER BY s.id),
           array_agg(s.limit_micros - s.reserved_micros
                     - CASE WHEN s.period_start < s.cur THEN 0 ELSE s.spent_micros END ORDER BY s.id),
           array_agg(s.cur ORDER BY s.id)
    INTO b_id, b_scope, b_sid, b_room, b_cur
    FROM (
        SELECT b.id, b.scope, b.scope_id, b.limit_micros, b.reserved_micros, b.spent_micros, b.period_start,
               tollgate_period_start(b.period, b.timezone, p_now) AS cur
        FROM budgets AS b
        WHERE (b.scope = 'key' AND b.scope_id IN (SELECT x->>'key_id' FROM jsonb_array_elements(p_items) AS x))
           OR (b.scope = 'user' AND b.scope_id IN (SELECT x->>'user_id' FROM jsonb_array_elements(p_items) AS x))
           OR (b.scope = 'team' AND b.scope_id IN (SELECT x->>'team_id' FROM jsonb_array_elements(p_items) AS x))
        ORDER BY b.id
        FOR UPDATE
    ) AS s;
    n := coalesce(cardinality(b_id), 0);
    b_add := array_fill(0::bigint, ARRAY[n]);
    -- Each item is decided in arrival order against the room the items before it left.
    FOR item IN
        SELECT e.value AS v, e.ord FROM jsonb_array_elements(p_items) WITH ORDINALITY AS e(value, ord) ORDER BY e.ord
    LOOP
        k := item.v->>'key_id';
        u := item.v->>'user_id';
        t := item.v->>'team_id';
        mine := '{}';
        ids := '{}';
        headroom := NULL;
        FOR i IN 1..n LOOP
            IF (b_scope[i] = 'key' AND b_sid[i] = k) OR (b_scope[i] = 'user' AND b_sid[i] = u)
               OR (b_scope[i] = 'team' AND b_sid[i] = t) THEN
                mine := mine || i;
                ids := ids || b_id[i];
                IF headroom IS NULL OR b_room[i] < headroom THEN
                    headroom := b_room[i];
                    tightest := b_id[i];
                END IF;
            END IF;
        END LOOP;
        idx := item.ord - 1;
        budget_ids := ids;
        IF headroom IS NULL THEN
            outcome := 'unbudgeted'; budget_id := NULL; cap := NULL; amount := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        prompt_cost := (item.v->>'prompt_tokens')::integer * (item.v->>'in_rate')::numeric;
        v_out_rate := (item.v->>'out_rate')::numeric;
        v_choices := (item.v->>'choices')::integer;
        v_has_output := (item.v->>'has_output')::boolean;
        v_cap := 0;
        IF v_has_output THEN
            v_cap := (item.v->>'max_cap')::integer;
            IF v_out_rate > 0 THEN
                v_cap := LEAST(v_cap, floor((headroom - prompt_cost) / (v_out_rate * v_choices)));
            END IF;
        END IF;
        v_amount := ceil(prompt_cost + GREATEST(v_cap, 0)::numeric * v_choices * v_out_rate);
        -- Refused only when not even a minimal answer (or, without output, the input) is affordable.
        IF v_amount > headroom OR (v_has_output AND v_cap < (item.v->>'min_cap')::integer) THEN
            outcome := 'refused'; budget_id := tightest; cap := NULL; amount := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        FOREACH i IN ARRAY mine LOOP
            b_room[i] := b_room[i] - v_amount;
            b_add[i] := b_add[i] + v_amount;
        END LOOP;
        l_rid := l_rid || (item.v->>'request_id');
        l_ids := l_ids || to_jsonb(ids);
        l_amount := l_amount || v_amount;
        l_key := l_key || k;
        l_user := l_user || u;
        l_team := l_team || t;
        l_endpoint := l_endpoint || (item.v->>'endpoint');
        l_model := l_model || (item.v->>'model');
        l_prompt := l_prompt || (item.v->>'prompt_tokens')::integer;
        l_cap := l_cap || v_cap * v_choices;
        outcome := 'reserved'; budget_id := tightest; cap := v_cap; amount := v_amount;
        RETURN NEXT;
    END LOOP;
    -- One row version per budget and one insert for the whole batch.
    UPDATE budgets AS bu
    SET spent_micros = CASE WHEN bu.period_start < s.cur THEN 0 ELSE bu.spent_micros END,
        period_start = GREATEST(bu.period_start, s.cur),
        reserved_micros = bu.reserved_micros + s.added,
        updated_at = p_now
    FROM unnest(b_id, b_cur, b_add) AS s(id, cur, added)
    WHERE bu.id = s.id AND s.added > 0;
    INSERT INTO budget_leases (request_id, budget_ids, amount_micros, api_key_id, user_id, team_id, endpoint,
                               model, prompt_tokens, output_cap, expires_at, created_at)
    SELECT l.rid, l.ids, l.amount, l.key, l.usr, l.team, l.endpoint, l.model, l.prompt, l.cap,
           p_now + make_interval(secs => p_ttl_s), p_now
    FROM unnest(l_rid, l_ids, l_amount, l_key, l_user, l_team, l_endpoint, l_model, l_prompt, l_cap)
         AS l(rid, ids, amount, key, usr, team, endpoint, model, prompt, cap);
END
$$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute(RESERVE_BATCH)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS tollgate_reserve_batch(jsonb, timestamptz, double precision)")
