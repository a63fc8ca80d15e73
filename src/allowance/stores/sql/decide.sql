-- allowance fast path on PostgreSQL: decide (and, if asked, charge) a plain request in one
-- statement. The twin of lua/decide.lua: the same grant arithmetic as windows.py, in float8,
-- whose IEEE operations match Python's. A grant comes back with what its decision needs
-- (remaining, the fair-use flag); for anything else Python replays the engine on the counters
-- returned (as they were before the charge). The schema's name is filled in where the function
-- and the table are named.
--
-- The feature's limits come as typed arrays, which the store writes into its statement as
-- constants (parsed once, when the statement is prepared): p_names, p_kinds (one letter per
-- limit: a anchored, s sliding, c calendar), p_lengths, and per limit and plan (index
-- (limit - 1) * plans + plan) p_caps (-1 unlimited, -2 no access), p_seat (per seat?) and p_fair
-- (fair-use level, -1 none). p_bounds: 4 period boundaries per calendar limit (local
-- estimates). Returns status 'ok' | 'slow' (reservations due, or a period not covered) |
-- 'unknown'; remaining is NULL when no charged limit has a cap.
--
-- Written for the interpreter: no loop over jsonb sets, no query but the row's two, nothing
-- the function does not need; a transaction that wrote nothing (a denial, a check) commits
-- without waiting for the WAL flush (it only logged the row lock).
CREATE OR REPLACE FUNCTION {s}.decide(
    p_account text, p_now float8, p_amount bigint, p_partial boolean, p_charge boolean,
    p_plans text[], p_names text[], p_kinds text, p_lengths float8[], p_caps bigint[],
    p_seat boolean[], p_fair bigint[], p_bounds float8[],
    OUT status text, OUT at float8, OUT before text, OUT granted bigint, OUT plan text,
    OUT seats int, OUT remaining bigint, OUT fair boolean
) LANGUAGE plpgsql AS $fn$
DECLARE
    acct record;
    t float8;
    pi int;
    np int := cardinality(p_plans);
    n int := cardinality(p_names);
    periods float8[];
    kind text;
    cap bigint;
    soft bigint;
    used bigint;
    g bigint := p_amount;
    blocked boolean := false;
    least_left bigint;   -- the least cap - used over the capped limits
    most_over bigint;    -- the most used - fair-use level over the others
    b int := 1;
    c jsonb;
    es jsonb;
    e jsonb;
    horizon float8;
    after jsonb;
    kept jsonb;
    last_t float8;
    nowait text;
    i int;
    j int;
    m int;
BEGIN
    SELECT a.plan, a.seats, a.next_hold_expiry, a.counters INTO acct
        FROM {s}.accounts a WHERE a.id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        status := 'unknown';
        RETURN;
    END IF;
    -- read after the row lock is held: decisions on one account are ordered as they commit
    t := coalesce(p_now, extract(epoch FROM clock_timestamp())::float8);
    at := t;
    plan := acct.plan;
    seats := acct.seats;
    granted := 0;
    fair := false;
    pi := array_position(p_plans, acct.plan);
    IF pi IS NULL OR (acct.next_hold_expiry IS NOT NULL AND t >= acct.next_hold_expiry) THEN
        nowait := set_config('synchronous_commit', 'off', true);  -- wrote nothing
        status := 'slow';
        RETURN;
    END IF;
    status := 'ok';
    before := acct.counters::text;
    FOR i IN 1 .. n LOOP
        m := (i - 1) * np + pi;
        cap := p_caps[m];
        IF cap = -2 THEN  -- no access: the engine says so
            nowait := set_config('synchronous_commit', 'off', true);
            RETURN;
        END IF;
        kind := substr(p_kinds, i, 1);
        IF kind = 'c' THEN
            FOR j IN 0 .. 2 LOOP
                IF p_bounds[b + j] <= t AND t < p_bounds[b + j + 1] THEN
                    periods[i] := p_bounds[b + j];
                END IF;
            END LOOP;
            b := b + 4;
            IF periods[i] IS NULL THEN
                nowait := set_config('synchronous_commit', 'off', true);
                status := 'slow';
                RETURN;
            END IF;
        END IF;
        c := acct.counters -> p_names[i];  -- [start, used, entries]; a NULL start: none
        used := 0;
        IF kind = 'a' THEN
            IF t < (c ->> 0)::float8 + p_lengths[i] THEN
                used := (c ->> 1)::bigint;
            END IF;
        ELSIF kind = 'c' THEN
            IF (c ->> 0)::float8 = periods[i] THEN
                used := (c ->> 1)::bigint;
            END IF;
        ELSE
            es := c -> 2;
            IF jsonb_typeof(es) = 'array' THEN
                horizon := t - p_lengths[i];
                FOR j IN 0 .. jsonb_array_length(es) - 1 LOOP
                    e := es -> j;
                    IF (e ->> 0)::float8 > horizon THEN
                        used := used + (e ->> 1)::bigint;
                    END IF;
                END LOOP;
            END IF;
        END IF;
        IF p_seat[m] AND cap >= 0 THEN
            cap := cap * acct.seats;
        END IF;
        IF cap >= 0 THEN
            IF cap - used < g THEN
                IF p_partial AND cap - used >= 1 THEN g := cap - used; ELSE blocked := true; END IF;
            END IF;
            IF least_left IS NULL OR cap - used < least_left THEN
                least_left := cap - used;
            END IF;
        ELSE
            soft := p_fair[m];
            IF soft >= 0 THEN
                IF p_seat[m] THEN soft := soft * acct.seats; END IF;
                IF most_over IS NULL OR used - soft > most_over THEN
                    most_over := used - soft;
                END IF;
            END IF;
        END IF;
    END LOOP;
    IF blocked THEN
        nowait := set_config('synchronous_commit', 'off', true);
        RETURN;
    END IF;
    -- what a grant's decision needs besides the grant, so Python need not replay the engine:
    -- the least remaining over the capped limits, and whether a fair-use level is passed
    granted := g;
    remaining := least_left - g;
    fair := coalesce(most_over + g > 0, false);
    IF NOT p_charge OR n = 0 THEN  -- nothing to write
        nowait := set_config('synchronous_commit', 'off', true);
        RETURN;
    END IF;
    after := acct.counters;
    FOR i IN 1 .. n LOOP
        kind := substr(p_kinds, i, 1);
        c := acct.counters -> p_names[i];
        IF kind = 'a' THEN  -- the open window, or a new one from now
            IF t < (c ->> 0)::float8 + p_lengths[i] THEN
                c := jsonb_build_array(c -> 0, (c ->> 1)::bigint + g, NULL);
            ELSE
                c := jsonb_build_array(t, g, NULL);
            END IF;
        ELSIF kind = 'c' THEN  -- this period's counter, or a new one
            IF (c ->> 0)::float8 = periods[i] THEN
                c := jsonb_build_array(periods[i], (c ->> 1)::bigint + g, NULL);
            ELSE
                c := jsonb_build_array(periods[i], g, NULL);
            END IF;
        ELSE  -- the grants still in the window, oldest first, and this one (merged at equal t)
            kept := '[]'::jsonb;
            used := 0;
            last_t := NULL;
            es := c -> 2;
            IF jsonb_typeof(es) = 'array' THEN
                horizon := t - p_lengths[i];
                FOR j IN 0 .. jsonb_array_length(es) - 1 LOOP
                    e := es -> j;
                    IF (e ->> 0)::float8 > horizon THEN
                        kept := kept || jsonb_build_array(e);
                        used := used + (e ->> 1)::bigint;
                        last_t := (e ->> 0)::float8;
                    END IF;
                END LOOP;
            END IF;
            IF last_t = t THEN
                kept := jsonb_set(
                    kept, ARRAY['-1', '1'], to_jsonb((kept -> -1 ->> 1)::bigint + g)
                );
            ELSE
                kept := kept || jsonb_build_array(jsonb_build_array(t, g));
            END IF;
            c := jsonb_build_array(NULL, used + g, kept);
        END IF;
        after := jsonb_set(after, ARRAY[p_names[i]], c);
    END LOOP;
    UPDATE {s}.accounts SET counters = after WHERE id = p_account;
END
$fn$
