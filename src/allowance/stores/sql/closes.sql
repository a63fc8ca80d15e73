-- When a counter decide() charged stops counting (windows.py's expires_at), or later: an
-- anchored window at its start + length, a sliding one at its last entry + length (decide()
-- writes them in time order), a period counter at the end of its period: pend for the period
-- holding now, pnext for the next one (a clock stepped back leaves it there), never for one
-- further ahead, whose end is not among the bounds (the row is then kept until the
-- transaction path writes it again: it works the end out). decide() asks only for a user's
-- record, whose drop_after the sweep reads.
CREATE OR REPLACE FUNCTION {s}.closes(kind text, c jsonb, length float8, period float8,
    pend float8, pnext float8)
RETURNS float8 LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE kind
        WHEN 'a' THEN (c ->> 0)::float8 + length
        WHEN 's' THEN (c -> 2 -> -1 ->> 0)::float8 + length
        ELSE CASE WHEN (c ->> 0)::float8 <= period THEN pend
            WHEN (c ->> 0)::float8 = pend THEN coalesce(pnext, 'Infinity')
            ELSE 'Infinity' END END
$fn$
