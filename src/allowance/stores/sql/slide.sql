-- A sliding window's entries after a grant of g at `at`, when `at` is not after the last of
-- them (the clock stepped back) or they are out of time order (a kernel before schema 4
-- appended): those still in the window (after `horizon`), in time order, the grant merged
-- with one made at the same time or put in its place, as windows.py does. decide() calls
-- it only then, so the usual decision pays no query for it.
CREATE OR REPLACE FUNCTION {s}.slide(es jsonb, horizon float8, at float8, g bigint)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $fn$
    SELECT coalesce(jsonb_agg(x ORDER BY (x ->> 0)::float8), '[]'::jsonb) FROM (
        SELECT CASE WHEN (e ->> 0)::float8 = at
            THEN jsonb_build_array(e -> 0, (e ->> 1)::bigint + g) ELSE e END
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(es) = 'array'
            THEN es ELSE '[]'::jsonb END) AS e
        WHERE (e ->> 0)::float8 > horizon
        UNION ALL
        SELECT jsonb_build_array(at, g)
        WHERE NOT EXISTS (SELECT FROM jsonb_array_elements(CASE WHEN jsonb_typeof(es) = 'array'
            THEN es ELSE '[]'::jsonb END) AS e WHERE (e ->> 0)::float8 = at)
    ) AS q(x)
$fn$
