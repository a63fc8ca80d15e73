-- allowance fast path on PostgreSQL: decide (and, if asked, charge) a plain request in one
-- statement. The twin of lua/decide.lua: a generic interpreter of the rules compiled by
-- rules.py, with the same window arithmetic as windows.py, in float8, whose IEEE operations
-- match Python's. A grant comes back with what its decision needs (remaining, the soft-level
-- flag); for anything else Python replays the engine on the counters returned (as they were
-- before the charge). The schema's name is filled in where the function and the table are
-- named.
--
-- The feature's rules (rules.Encoded) come as typed arrays, which the store writes into its
-- statement as constants (parsed once, when the statement is prepared): p_plans and p_access
-- (0: the plan has no access) per plan; p_names, p_kinds (one letter per counter: a anchored,
-- s sliding, p period), p_lengths and p_costs (a grant of g charges g * cost: caps, soft levels
-- and ceilings are in the counter's units) per counter; per counter and plan (index
-- (counter - 1) * plans + plan) p_caps and p_soft (-1: none), p_scale (1: both times the
-- account's seats), p_load (the load factor that lowers the cap) and p_most (the most one
-- request is granted; -1: any). p_bounds: 4 period boundaries per period counter (local
-- estimates). p_records: per counter, the record holding it (0: the account's row, k: the
-- owned row p_owners[k], a user's counters, owners.py), given back as read in others (a JSON
-- array). A user_global row is locked behind the account's row (made if missing, as the
-- transaction path does; a found one is only locked, so a denial writes nothing); a member's
-- (owners.record_key: not starting with the separator) is only read, since only its
-- account's decisions, which hold that account's row, write it (a sweep may delete it in
-- between, or it may not exist yet: its charge then inserts it). An owned row charged keeps
-- its rows at least until p_keep (windows.KEEP_AFTER) after the windows charged close
-- (drop_after, read by the sweep). The account's own terms (accounts.adjustments, adjust.py:
-- counter name -> [max or null, [[until, units], ...]]) change a counter's cap: the max
-- replaces cap × seats (before the load factor), the units of grants with at < until are
-- added after it; they come back in terms, for the replay.
-- Event levels (events.crosses): per counter p_reach (0: no events; else a charge leaving
-- less than this below the cap crosses) and the fractions of the cap p_levels[p_level_at[i]
-- + 1 .. p_level_at[i + 1]]; a charge crossing one, or passing an uncapped counter's soft
-- level, writes nothing here and answers 'slow': the transaction path writes its events.
-- The ledger (ledger.py): p_head, the start of a charge's rows (NULL: no ledger), to which
-- each charged counter's name, units and the time are appended, one row each.
-- Returns status 'ok' | 'slow' (reservations due, a period not covered, a level crossed) |
-- 'unknown';
-- remaining is NULL when no counter has a cap.
--
-- Written for the interpreter. PL/pgSQL prepares each expression it evaluates once per
-- transaction, and every decision is a transaction of its own, so the cost is in how many
-- distinct expressions run: few and dense (CASE, least/greatest over NULLs), no query but the
-- row's read and its update, the charged counters merged into the row with one ||. Unless the
-- request is partial, the grant is known before the counters are read, so each charged counter
-- is built as its cap is checked (one pass; a partial grant takes a second). A transaction
-- that wrote nothing (a denial, a check) commits without waiting for the WAL flush (it only
-- logged the row lock). (The decide() functions of schemas 4 to 8 are left in place for
-- processes of those versions still running: from schema 9 on, the function's name carries
-- the version, since what it returns cannot change in place.)
CREATE OR REPLACE FUNCTION {s}.decide_v13(
    p_account text, p_now float8, p_amount bigint, p_partial boolean, p_charge boolean,
    p_plans text[], p_access int[], p_names text[], p_kinds text, p_lengths float8[],
    p_costs bigint[], p_caps bigint[], p_scale int[], p_soft bigint[], p_load float8[],
    p_most bigint[], p_bounds float8[], p_records int[], p_owners text[], p_keep float8,
    p_reach bigint[], p_levels float8[], p_level_at int[], p_head text,
    OUT status text, OUT at float8, OUT before text, OUT granted bigint, OUT plan text,
    OUT seats int, OUT remaining bigint, OUT passed boolean, OUT terms text, OUT others text
) LANGUAGE plpgsql AS $fn$
DECLARE
    cs jsonb;  -- the counters as read: limit name -> [start, used, entries]
    ocs jsonb[];  -- those of each owned row
    otouched jsonb[];  -- the charged counters of each owned row
    oends float8[];  -- for each owned row charged: the latest end of a window charged
    pends float8[];  -- for each period counter: the end of the period holding at
    pnexts float8[];  -- and of the one after
    r int;  -- the record of the counter at hand
    nc jsonb;  -- a charged counter
    adj jsonb;  -- the account's own terms
    own jsonb;  -- those of one counter
    due float8;  -- the earliest expiry of a held reservation
    pi int;
    np int;
    periods float8[];
    kind text;
    cap bigint;
    used bigint;
    g bigint := p_amount;
    blocked boolean := false;
    -- the least (cap - used) / cost over the capped counters (least() skips NULLs): the units
    -- of the feature left; and the least (soft level - used) / cost over the uncapped ones: a
    -- grant above it passes a soft level (division truncates, which differs from the floor
    -- only below 0, where every grant is above or no grant fits)
    least_left bigint;
    least_slack bigint;
    u bigint;  -- the units a grant of g charges the counter: g * its cost
    b int := 1;
    c jsonb;
    es jsonb;
    e jsonb;
    horizon float8;
    touched jsonb := '{{}}';  -- the charged counters
    onepass boolean := p_charge AND NOT p_partial;  -- the grant is known: build them as read
    kept jsonb;
    last_t float8;
    t float8;
    ordered boolean;  -- the sliding entries read are in time order
    nowait text;
    xcap bigint[];  -- per counter: its cap (-1: none), its soft level, its usage, as read
    xsoft bigint[];
    xused bigint[];
    crossed boolean := false;
    i int;
    j int;
    k int;
    m int;
BEGIN
    SELECT a.plan, a.seats, a.next_hold_expiry, a.counters, a.adjustments
        INTO plan, seats, due, cs, adj
        FROM {s}.accounts a WHERE a.id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        status := 'unknown';
        RETURN;
    END IF;
    terms := adj::text;
    -- read after the row lock is held: decisions on one account are ordered as they commit
    at := coalesce(p_now, extract(epoch FROM clock_timestamp())::float8);
    granted := 0;
    passed := false;
    pi := array_position(p_plans, plan);
    IF cardinality(p_owners) > 0 AND pi IS NOT NULL AND (due IS NULL OR at < due) THEN
        FOR k IN 1 .. cardinality(p_owners) LOOP  -- locked in the caller's (fixed) order
            IF left(p_owners[k], 1) <> chr(31) THEN  -- a member's: the account's lock guards it
                SELECT o.counters INTO c FROM {s}.owned o WHERE o.owner = p_owners[k];
                c := coalesce(c, '{{}}');  -- a missing one is made by its first charge
            ELSE
                SELECT o.counters INTO c FROM {s}.owned o WHERE o.owner = p_owners[k]
                    FOR UPDATE;
                IF NOT FOUND THEN  -- made, or locked if another made it since
                    INSERT INTO {s}.owned AS o (owner, counters, drop_after)
                        VALUES (p_owners[k], '{{}}', 0) ON CONFLICT (owner)
                        DO UPDATE SET counters = o.counters RETURNING o.counters INTO c;
                END IF;
            END IF;
            ocs[k] := c;
        END LOOP;
        others := array_to_json(ocs)::text;
    END IF;
    IF pi IS NULL OR at >= due THEN  -- an unknown plan, or reservations to settle
        status := 'slow';
    ELSIF p_access[pi] = 0 THEN  -- nothing granted: the engine says why
        status := 'ok';
        before := cs::text;
    ELSE
        status := 'ok';
        before := cs::text;
        np := cardinality(p_plans);
        FOR i IN 1 .. cardinality(p_names) LOOP
            m := (i - 1) * np + pi;
            -- times the seats, then lowered by a load factor: floor(cap * load), the same
            -- double product as Python's
            cap := CASE WHEN p_caps[m] < 0 THEN p_caps[m]
                WHEN p_load[m] = 1 THEN p_caps[m] * CASE WHEN p_scale[m] = 1 THEN seats ELSE 1 END
                ELSE floor((p_caps[m] * CASE WHEN p_scale[m] = 1 THEN seats ELSE 1 END)::float8
                    * p_load[m])::bigint END;
            IF adj IS NOT NULL THEN  -- the account's own terms: one test when it has none
                own := adj -> p_names[i];
                IF own IS NOT NULL THEN  -- its max in place of cap × seats, then grants
                    IF jsonb_typeof(own -> 0) = 'number' THEN
                        cap := CASE WHEN p_load[m] = 1 THEN (own ->> 0)::bigint
                            ELSE floor((own ->> 0)::float8 * p_load[m])::bigint END;
                    END IF;
                    IF cap >= 0 THEN
                        FOR j IN 0 .. jsonb_array_length(own -> 1) - 1 LOOP
                            IF at < (own -> 1 -> j ->> 0)::float8 THEN
                                cap := cap + (own -> 1 -> j ->> 1)::bigint;
                            END IF;
                        END LOOP;
                    END IF;
                END IF;
            END IF;
            kind := substr(p_kinds, i, 1);
            u := g * p_costs[i];
            r := p_records[i];
            c := CASE WHEN r = 0 THEN cs ELSE ocs[r] END -> p_names[i];  -- NULL start: no window
            IF kind = 's' THEN
                used := 0;
                kept := '[]';
                last_t := NULL;
                ordered := true;
                horizon := at - p_lengths[i];
                es := c -> 2;
                IF jsonb_typeof(es) = 'array' THEN
                    FOR j IN 0 .. jsonb_array_length(es) - 1 LOOP
                        e := es -> j;
                        t := (e ->> 0)::float8;
                        IF t > horizon THEN
                            used := used + (e ->> 1)::bigint;
                            IF onepass THEN
                                kept := kept || jsonb_build_array(e);
                                IF last_t > t THEN
                                    ordered := false;
                                END IF;
                                last_t := t;
                            END IF;
                        END IF;
                    END LOOP;
                END IF;
                IF onepass THEN  -- the grants still in the window and this one (see below)
                    nc := jsonb_build_array(NULL, used + u, CASE WHEN NOT ordered OR last_t > at
                        THEN {s}.slide(es, horizon, at, u)
                        WHEN last_t = at
                        THEN jsonb_set(kept, ARRAY['-1', '1'],
                            to_jsonb((kept -> -1 ->> 1)::bigint + u))
                        ELSE kept || jsonb_build_array(jsonb_build_array(at, u)) END);
                END IF;
            ELSIF kind = 'a' THEN
                used := CASE WHEN at < (c ->> 0)::float8 + p_lengths[i]
                    THEN (c ->> 1)::bigint ELSE 0 END;
                IF onepass THEN  -- the open window, or a new one from now
                    nc := CASE WHEN at < (c ->> 0)::float8 + p_lengths[i]
                        THEN jsonb_build_array(c -> 0, used + u, NULL)
                        ELSE jsonb_build_array(at, u, NULL) END;
                END IF;
            ELSE
                -- the period of the bounds holding at (NULL: none, and so no period)
                j := CASE WHEN at < p_bounds[b] OR at >= p_bounds[b + 3] THEN NULL
                    WHEN at < p_bounds[b + 1] THEN 0 WHEN at < p_bounds[b + 2] THEN 1 ELSE 2 END;
                periods[i] := p_bounds[b + j];
                IF r > 0 THEN  -- a user's record keeps its rows as long as they count
                    pends[i] := p_bounds[b + j + 1];
                    pnexts[i] := CASE WHEN j < 2 THEN p_bounds[b + j + 2] END;
                END IF;
                b := b + 4;
                IF periods[i] IS NULL THEN
                    status := 'slow';
                    EXIT;
                END IF;
                -- a counter of a later period (the clock stepped back) still counts, and
                -- stays: a counter's period only moves forward (windows.py)
                used := CASE WHEN (c ->> 0)::float8 >= periods[i]
                    THEN (c ->> 1)::bigint ELSE 0 END;
                IF onepass THEN  -- this period's counter
                    nc := jsonb_build_array(greatest(periods[i], (c ->> 0)::float8), used + u,
                        NULL);
                END IF;
            END IF;
            IF onepass THEN
                IF r = 0 THEN
                    touched := touched || jsonb_build_object(p_names[i], nc);
                ELSE
                    otouched[r] := coalesce(otouched[r], '{{}}') || jsonb_build_object(
                        p_names[i], nc);
                    oends[r] := greatest(oends[r], {s}.closes(kind, nc, p_lengths[i],
                        periods[i], pends[i], pnexts[i]));
                END IF;
            END IF;
            xcap[i] := cap;
            xused[i] := used;
            xsoft[i] := CASE WHEN p_scale[m] = 1 AND p_soft[m] >= 0 THEN p_soft[m] * seats
                ELSE p_soft[m] END;
            -- a per-request ceiling: more is denied (the engine says why), or with partial cut
            IF p_most[m] >= 0 AND g * p_costs[i] > p_most[m] THEN
                IF p_partial AND p_most[m] >= p_costs[i] THEN
                    g := p_most[m] / p_costs[i];
                ELSE
                    blocked := true;
                END IF;
            END IF;
            IF cap >= 0 THEN
                IF (cap - used) / p_costs[i] < g THEN
                    IF p_partial AND (cap - used) / p_costs[i] >= 1 THEN
                        g := (cap - used) / p_costs[i];
                    ELSE
                        blocked := true;
                    END IF;
                END IF;
                least_left := least(least_left, (cap - used) / p_costs[i]);
            ELSIF p_soft[m] >= 0 THEN
                least_slack := least(least_slack, (CASE WHEN p_scale[m] = 1
                    THEN p_soft[m] * seats ELSE p_soft[m] END - used) / p_costs[i]);
            END IF;
        END LOOP;
        IF status = 'ok' AND NOT blocked THEN
            -- a grant: what its decision needs besides the grant, so Python need not replay
            -- the engine (the least remaining over the capped counters; a soft level passed)
            granted := g;
            remaining := least_left - g;
            passed := coalesce(g > least_slack, false);
            IF p_charge AND cardinality(p_names) > 0 THEN
                FOR i IN 1 .. cardinality(p_names) LOOP  -- a level crossed (see above)?
                    IF p_reach[i] > 0 THEN
                        u := g * p_costs[i];
                        IF xcap[i] >= 0 THEN
                            crossed := crossed OR xcap[i] - (xused[i] + u) < p_reach[i];
                            FOR j IN p_level_at[i] + 1 .. p_level_at[i + 1] LOOP
                                crossed := crossed OR (xused[i] < p_levels[j] * xcap[i]
                                    AND p_levels[j] * xcap[i] <= xused[i] + u);
                            END LOOP;
                        ELSIF xsoft[i] >= 0 THEN
                            crossed := crossed OR (xused[i] <= xsoft[i] AND xsoft[i] < xused[i] + u);
                        END IF;
                    END IF;
                END LOOP;
                IF crossed THEN
                    status := 'slow';
                    granted := 0;
                    nowait := set_config('synchronous_commit', 'off', true);
                    RETURN;
                END IF;
                IF NOT onepass THEN  -- partial: the grant is known now (onepass: built above)
                    FOR i IN 1 .. cardinality(p_names) LOOP
                        kind := substr(p_kinds, i, 1);
                        u := g * p_costs[i];
                        r := p_records[i];
                        c := CASE WHEN r = 0 THEN cs ELSE ocs[r] END -> p_names[i];
                        IF kind = 'a' THEN  -- the open window, or a new one from now
                            c := CASE WHEN at < (c ->> 0)::float8 + p_lengths[i]
                                THEN jsonb_build_array(c -> 0, (c ->> 1)::bigint + u, NULL)
                                ELSE jsonb_build_array(at, u, NULL) END;
                        ELSIF kind = 'p' THEN  -- this (or a later) period's counter, or a new one
                            c := jsonb_build_array(greatest(periods[i], (c ->> 0)::float8),
                                CASE WHEN (c ->> 0)::float8 >= periods[i]
                                THEN (c ->> 1)::bigint + u ELSE u END, NULL);
                        ELSE  -- the grants still in the window, oldest first, and this one
                            kept := '[]';
                            used := 0;
                            last_t := NULL;
                            ordered := true;
                            horizon := at - p_lengths[i];
                            es := c -> 2;
                            IF jsonb_typeof(es) = 'array' THEN
                                FOR j IN 0 .. jsonb_array_length(es) - 1 LOOP
                                    e := es -> j;
                                    t := (e ->> 0)::float8;
                                    IF t > horizon THEN
                                        kept := kept || jsonb_build_array(e);
                                        used := used + (e ->> 1)::bigint;
                                        IF last_t > t THEN
                                            ordered := false;
                                        END IF;
                                        last_t := t;
                                    END IF;
                                END LOOP;
                            END IF;
                            kept := CASE WHEN NOT ordered OR last_t > at  -- see slide()
                                THEN {s}.slide(es, horizon, at, u)
                                WHEN last_t = at  -- merged with a grant at the same time
                                THEN jsonb_set(kept, ARRAY['-1', '1'],
                                    to_jsonb((kept -> -1 ->> 1)::bigint + u))
                                ELSE kept || jsonb_build_array(jsonb_build_array(at, u)) END;
                            c := jsonb_build_array(NULL, used + u, kept);
                        END IF;
                        IF r = 0 THEN
                            touched := touched || jsonb_build_object(p_names[i], c);
                        ELSE
                            otouched[r] := coalesce(otouched[r], '{{}}') || jsonb_build_object(
                                p_names[i], c);
                            oends[r] := greatest(oends[r], {s}.closes(kind, c, p_lengths[i],
                                periods[i], pends[i], pnexts[i]));
                        END IF;
                    END LOOP;
                END IF;
                IF touched <> '{{}}' THEN
                    UPDATE {s}.accounts SET counters = cs || touched WHERE id = p_account;
                END IF;
                FOR k IN 1 .. cardinality(p_owners) LOOP
                    IF otouched[k] IS NOT NULL THEN
                        UPDATE {s}.owned SET counters = ocs[k] || otouched[k],
                            drop_after = greatest(drop_after, oends[k] + p_keep)
                            WHERE owner = p_owners[k];
                        IF NOT FOUND THEN  -- a member's, swept since it was read unlocked
                            INSERT INTO {s}.owned AS o (owner, counters, drop_after)
                                VALUES (p_owners[k], ocs[k] || otouched[k], oends[k] + p_keep)
                                ON CONFLICT (owner) DO UPDATE SET counters = excluded.counters,
                                drop_after = greatest(o.drop_after, excluded.drop_after);
                        END IF;
                    END IF;
                END LOOP;
                IF p_head IS NOT NULL THEN  -- the ledger's rows: one per counter charged
                    INSERT INTO {s}.ledger (at, account, body)
                        SELECT at, p_account, p_head || ',' || to_json(x.n)::text || ','
                            || (g * x.c)::text || ',' || at::text || ']'
                        FROM unnest(p_names, p_costs) AS x(n, c);
                END IF;
                RETURN;
            END IF;
        END IF;
    END IF;
    nowait := set_config('synchronous_commit', 'off', true);  -- wrote nothing but the lock
END
$fn$
