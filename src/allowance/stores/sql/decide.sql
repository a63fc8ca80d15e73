-- allowance fast path on PostgreSQL: decide (and, if asked, charge) a plain request in one
-- statement. The twin of lua/decide.lua: the same grant arithmetic as windows.py, in float8,
-- whose IEEE operations match Python's; Python replays the engine on the counters returned
-- (before the charge) for every other field of the decision. The schema's name is filled in
-- where the functions and tables are named.
--
-- p_limits: the feature's limits, a JSON array of objects with n (name), k (a, s or c),
--           l (length), caps (cap per plan; -1 unlimited, -2 no access), seat (per seat?)
-- p_bounds: 4 period boundaries per calendar limit, in order (local estimates)
-- Returns status 'ok' | 'slow' (reservations due, or a period not covered) | 'unknown'.
CREATE OR REPLACE FUNCTION {s}.decide(
    p_account text, p_now float8, p_amount bigint, p_partial boolean, p_charge boolean,
    p_plans text[], p_limits jsonb, p_bounds float8[]
) RETURNS TABLE (status text, at float8, before jsonb, granted bigint, plan text, seats int)
LANGUAGE plpgsql AS $fn$
DECLARE
    acct record;
    t float8;
    pi int;
    n int := jsonb_array_length(p_limits);
    lim jsonb;
    c jsonb;
    caps bigint[] := ARRAY[]::bigint[];
    periods float8[] := ARRAY[]::float8[];
    used bigint;
    g bigint := p_amount;
    blocked boolean := false;
    b int := 1;
    after jsonb;
    kept jsonb;
    total bigint;
    last_t float8;
    i int;
    k int;
BEGIN
    SELECT a.plan, a.seats, a.next_hold_expiry, a.counters INTO acct
        FROM {s}.accounts a WHERE a.id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown'::text, NULL::float8, NULL::jsonb, 0::bigint, NULL::text, 0;
        RETURN;
    END IF;
    -- read after the row lock is held: decisions on one account are ordered as they commit
    t := coalesce(p_now, extract(epoch FROM clock_timestamp())::float8);
    pi := array_position(p_plans, acct.plan);
    IF pi IS NULL OR (acct.next_hold_expiry IS NOT NULL AND t >= acct.next_hold_expiry) THEN
        PERFORM set_config('synchronous_commit', 'off', true);  -- wrote nothing
        RETURN QUERY SELECT 'slow'::text, t, NULL::jsonb, 0::bigint, acct.plan, acct.seats;
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        lim := p_limits -> (i - 1);
        periods[i] := NULL;
        IF lim ->> 'k' = 'c' THEN
            FOR k IN 0 .. 2 LOOP
                IF p_bounds[b + k] <= t AND t < p_bounds[b + k + 1] THEN
                    periods[i] := p_bounds[b + k];
                END IF;
            END LOOP;
            b := b + 4;
            IF periods[i] IS NULL THEN
                PERFORM set_config('synchronous_commit', 'off', true);
                RETURN QUERY SELECT 'slow'::text, t, NULL::jsonb, 0::bigint, acct.plan, acct.seats;
                RETURN;
            END IF;
        END IF;
        caps[i] := (lim -> 'caps' ->> (pi - 1))::bigint;
        IF caps[i] = -2 THEN  -- no access: the engine says so
            PERFORM set_config('synchronous_commit', 'off', true);
            RETURN QUERY SELECT 'ok'::text, t, acct.counters, 0::bigint, acct.plan, acct.seats;
            RETURN;
        END IF;
        IF caps[i] >= 0 AND (lim -> 'seat' ->> (pi - 1))::boolean THEN
            caps[i] := caps[i] * acct.seats;
        END IF;
    END LOOP;
    FOR i IN 1 .. n LOOP
        CONTINUE WHEN caps[i] < 0;
        lim := p_limits -> (i - 1);
        c := acct.counters -> (lim ->> 'n');
        used := 0;
        IF c IS NOT NULL THEN
            IF lim ->> 'k' = 'a' THEN
                IF jsonb_typeof(c -> 0) = 'number'
                        AND t < (c ->> 0)::float8 + (lim ->> 'l')::float8 THEN
                    used := (c ->> 1)::bigint;
                END IF;
            ELSIF lim ->> 'k' = 'c' THEN
                IF jsonb_typeof(c -> 0) = 'number' AND (c ->> 0)::float8 = periods[i] THEN
                    used := (c ->> 1)::bigint;
                END IF;
            ELSIF jsonb_typeof(c -> 2) = 'array' THEN
                SELECT coalesce(sum((e ->> 1)::bigint), 0) INTO used
                    FROM jsonb_array_elements(c -> 2) e
                    WHERE (e ->> 0)::float8 > t - (lim ->> 'l')::float8;
            END IF;
        END IF;
        IF caps[i] - used < g THEN
            IF p_partial AND caps[i] - used >= 1 THEN g := caps[i] - used; ELSE blocked := true; END IF;
        END IF;
    END LOOP;
    IF blocked OR NOT p_charge THEN
        PERFORM set_config('synchronous_commit', 'off', true);
        RETURN QUERY SELECT 'ok'::text, t, acct.counters,
            CASE WHEN blocked THEN 0::bigint ELSE g END, acct.plan, acct.seats;
        RETURN;
    END IF;
    after := acct.counters;
    FOR i IN 1 .. n LOOP
        lim := p_limits -> (i - 1);
        c := acct.counters -> (lim ->> 'n');
        IF lim ->> 'k' = 'a' THEN
            IF c IS NULL OR jsonb_typeof(c -> 0) <> 'number'
                    OR t >= (c ->> 0)::float8 + (lim ->> 'l')::float8 THEN
                c := jsonb_build_array(t, g, NULL);
            ELSE
                c := jsonb_build_array((c ->> 0)::float8, (c ->> 1)::bigint + g, NULL);
            END IF;
        ELSIF lim ->> 'k' = 'c' THEN
            IF c IS NULL OR jsonb_typeof(c -> 0) <> 'number' OR (c ->> 0)::float8 <> periods[i] THEN
                c := jsonb_build_array(periods[i], g, NULL);
            ELSE
                c := jsonb_build_array(periods[i], (c ->> 1)::bigint + g, NULL);
            END IF;
        ELSE
            kept := '[]'::jsonb;
            total := 0;
            IF c IS NOT NULL AND jsonb_typeof(c -> 2) = 'array' THEN
                SELECT coalesce(jsonb_agg(e ORDER BY o), '[]'::jsonb),
                       coalesce(sum((e ->> 1)::bigint), 0)
                    INTO kept, total
                    FROM jsonb_array_elements(c -> 2) WITH ORDINALITY AS x(e, o)
                    WHERE (e ->> 0)::float8 > t - (lim ->> 'l')::float8;
            END IF;
            last_t := (kept -> -1 ->> 0)::float8;
            IF last_t = t THEN
                kept := jsonb_set(kept, ARRAY['-1', '1'],
                                  to_jsonb((kept -> -1 ->> 1)::bigint + g));
            ELSE
                kept := kept || jsonb_build_array(jsonb_build_array(t, g));
            END IF;
            c := jsonb_build_array(NULL, total + g, kept);
        END IF;
        after := jsonb_set(after, ARRAY[lim ->> 'n'], c);
    END LOOP;
    UPDATE {s}.accounts SET counters = after WHERE id = p_account;
    RETURN QUERY SELECT 'ok'::text, t, acct.counters, g, acct.plan, acct.seats;
END
$fn$
