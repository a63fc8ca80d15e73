"""The PostgreSQL stores' SQL, one copy for the sync and async stores: the schema (``DDL``,
run in order on a schema older than ``SCHEMA_VERSION``: ``postgres_schema.py``) and the
statements (``TEMPLATES``, rendered per schema by ``postgres_common.queries``).
The one-statement fast path is ``sql/decide.sql``."""

from __future__ import annotations

from importlib import resources

from allowance.stores import sql_ledger

__all__ = ["DDL", "SCHEMA_VERSION", "TEMPLATES"]

# 2: the decide() function of the fast path; 3: its typed-spec version; 4: clock steps back;
# 5: the rules as generic arrays; 6: per-request ceilings; 7: costs (credits); 8: load factors;
# 9: an account's own terms (accounts.adjustments, read by decide_v9()); 10: owned;
# 11: owned records in the fast path (decide_v11()); 12: events and event_marks, decide_v12()
# leaves a charge crossing an event level to the transaction path; 13: the ledger, which
# decide_v13() writes
SCHEMA_VERSION = 13

# ``{s}`` is the schema, ``{held}`` the literal 'held' (a literal, not a parameter, so the
# planner can use the partial index on held holds).
DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL,"
    " one boolean PRIMARY KEY DEFAULT true CHECK (one))",  # a single row
    # counters: {limit: [start, used, entries]}; fillfactor leaves room for HOT updates
    "CREATE TABLE IF NOT EXISTS {s}.accounts (id text PRIMARY KEY, plan text NOT NULL,"
    " seats integer NOT NULL, next_hold_expiry double precision,"
    " counters jsonb NOT NULL DEFAULT '{{}}') WITH (fillfactor = 90)",
    # the account's own terms (adjust.py); NULL: none
    "ALTER TABLE {s}.accounts ADD COLUMN IF NOT EXISTS adjustments jsonb",
    "CREATE TABLE IF NOT EXISTS {s}.holds (id text PRIMARY KEY, account text NOT NULL,"
    " state text NOT NULL, expires_at double precision NOT NULL, body jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS holds_held ON {s}.holds (account, expires_at) WHERE state = {held}",
    "CREATE INDEX IF NOT EXISTS holds_expires_at ON {s}.holds (expires_at)",
    "CREATE TABLE IF NOT EXISTS {s}.idempotency (account text NOT NULL, key text NOT NULL,"
    " expires_at double precision NOT NULL, body jsonb NOT NULL, PRIMARY KEY (account, key))",
    "CREATE INDEX IF NOT EXISTS idempotency_expires_at ON {s}.idempotency (expires_at)",
    "CREATE TABLE IF NOT EXISTS {s}.settings (name text PRIMARY KEY, value text NOT NULL)",
    # per-user counters (owners.py), apart from the account's row so that it does not grow
    # with its users; drop_after: when the last of them has nothing left to count
    "CREATE TABLE IF NOT EXISTS {s}.owned (owner text PRIMARY KEY, counters jsonb NOT NULL,"
    " drop_after double precision NOT NULL)",
    "CREATE INDEX IF NOT EXISTS owned_drop_after ON {s}.owned (drop_after)",
    # events (events.py, sql_events.py): the outbox, and the marks still standing
    "CREATE TABLE IF NOT EXISTS {s}.events (id bigserial PRIMARY KEY,"
    " at double precision NOT NULL, account text NOT NULL, body text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS events_account ON {s}.events (account, id)",
    "CREATE INDEX IF NOT EXISTS events_at ON {s}.events (at)",
    "CREATE TABLE IF NOT EXISTS {s}.event_marks (account text NOT NULL, mark text NOT NULL,"
    " until double precision NOT NULL, PRIMARY KEY (account, mark))",
    "CREATE INDEX IF NOT EXISTS event_marks_until ON {s}.event_marks (until)",
    # the ledger (ledger.py, sql_ledger.py): no index on at, see sql_ledger.py
    "CREATE TABLE IF NOT EXISTS {s}.ledger (id bigserial PRIMARY KEY,"
    " at double precision NOT NULL, account text NOT NULL, body text NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ledger_account ON {s}.ledger (account, id)",
    # the one-statement fast path (sql/decide.sql): the decision rules it repeats are the
    # grant arithmetic only, held equal to the engine's by the shared test suites
    resources.files("allowance.stores").joinpath("sql/slide.sql").read_text("utf-8"),
    resources.files("allowance.stores").joinpath("sql/closes.sql").read_text("utf-8"),
    resources.files("allowance.stores").joinpath("sql/decide.sql").read_text("utf-8"),
)
TEMPLATES = {
    # Taken by a transaction writing events, after its other writes, just before COMMIT:
    # such transactions commit one at a time, so ids become visible in increasing order
    # (a sequence alone hands out ids in the order asked, not the order committed). Keyed by
    # the events table's oid: one lock per schema.
    "lock_events": "SELECT pg_advisory_xact_lock(1634495600,"
    " mod('{s}.events'::regclass::oid::bigint, 2147483647)::int)",
    "put_event": "INSERT INTO {s}.events (at, account, body) VALUES (%s, %s, %s)",
    # written only if the mark is taken (sql_events.py)
    "put_marked_event": "WITH m AS (INSERT INTO {s}.event_marks AS m (account, mark, until)"
    " VALUES (%s, %s, %s) ON CONFLICT (account, mark) DO UPDATE SET until = excluded.until"
    " WHERE m.until <= %s RETURNING 1)"
    " INSERT INTO {s}.events (at, account, body) SELECT %s, %s, %s FROM m",
    "sweep_events": "DELETE FROM {s}.events WHERE id IN"
    " (SELECT id FROM {s}.events WHERE at < %s LIMIT %s)",
    "put_rows": "INSERT INTO {s}.ledger (at, account, body)"
    " SELECT unnest(%s::float8[]), %s, unnest(%s::text[])",
    # the oldest ids first (sql_ledger.py)
    "sweep_ledger": sql_ledger.statements("{s}.", "%s")["drop_rows"],
    "sweep_marks": "DELETE FROM {s}.event_marks WHERE (account, mark) IN"
    " (SELECT account, mark FROM {s}.event_marks WHERE until < %s LIMIT %s)",
    "version": "SELECT max(version) FROM {s}.schema_version",
    "get_setting": "SELECT value FROM {s}.settings WHERE name = %s",
    "account_ids": 'SELECT id FROM {s}.accounts ORDER BY id COLLATE "C"',
    "account_page": 'SELECT id FROM {s}.accounts WHERE id COLLATE "C" > %s'
    ' AND left(id, length(%s)) = %s ORDER BY id COLLATE "C" LIMIT %s',
    "put_setting": "INSERT INTO {s}.settings (name, value) VALUES (%s, %s)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    "new_setting": "INSERT INTO {s}.settings (name, value) VALUES (%s, %s)"
    " ON CONFLICT (name) DO NOTHING",
    "swap_setting": "UPDATE {s}.settings SET value = %s WHERE name = %s AND value = %s",
    "delete_setting": "DELETE FROM {s}.settings WHERE name = %s",
    "set_version": "INSERT INTO {s}.schema_version (version) VALUES (%s)"
    " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
    "lock": "WITH a AS MATERIALIZED (SELECT plan, seats, next_hold_expiry, counters,"
    " adjustments FROM {s}.accounts WHERE id = %s FOR UPDATE)"
    " SELECT plan, seats, next_hold_expiry, counters,"
    " extract(epoch FROM clock_timestamp())::float8, adjustments FROM a",
    "write_terms": "UPDATE {s}.accounts SET adjustments = %s::jsonb WHERE id = %s",
    "write": "UPDATE {s}.accounts SET counters = %s::jsonb WHERE id = %s",
    # After a hold changed: the subquery sees the hold upserts queued before it in this
    # transaction, so the earliest held expiry is right even when the earliest hold just left
    # the held state, and the view never has to ask for it.
    "write_holds": "UPDATE {s}.accounts AS a SET counters = %s::jsonb,"
    " next_hold_expiry = (SELECT min(h.expires_at) FROM {s}.holds AS h"
    " WHERE h.account = a.id AND h.state = {held}) WHERE a.id = %s",
    # with an account.plan_changed event when the plan changes (and events are on), after
    # ``lock_account`` in the same transaction: the statement starts once a racing change
    # has committed, so ``old`` (the row as the statement found it) is the plan that change
    # made, not the plan before both
    "lock_account": "SELECT 1 FROM {s}.accounts WHERE id = %(id)s FOR UPDATE",
    "put_account": "WITH old AS (SELECT plan, seats FROM {s}.accounts WHERE id = %(id)s),"
    " up AS (INSERT INTO {s}.accounts AS a (id, plan, seats) VALUES (%(id)s, %(plan)s, %(seats)s)"
    " ON CONFLICT (id) DO UPDATE SET plan = excluded.plan, seats = excluded.seats"
    " RETURNING (a.xmax = 0) AS created),"
    " changed AS (SELECT plan FROM old WHERE %(events)s AND plan <> %(plan)s),"
    " locked AS (SELECT pg_advisory_xact_lock(1634495600,"
    " mod('{s}.events'::regclass::oid::bigint, 2147483647)::int) FROM changed),"
    " at AS (SELECT coalesce(%(at)s, extract(epoch FROM clock_timestamp())::float8) AS t),"
    " ev AS (INSERT INTO {s}.events (at, account, body) SELECT at.t, %(id)s,"
    " json_build_object('type', 'account.plan_changed', 'at', at.t, 'account', %(id)s,"
    " 'limit', NULL, 'data', json_build_object('from', changed.plan, 'to', %(plan)s,"
    " 'seats', %(seats)s))::text FROM changed, locked, at),"
    # the ledger's row (ledger.plan_change) when the plan or the seats change
    " lg AS (INSERT INTO {s}.ledger (at, account, body) SELECT at.t, %(id)s,"
    " json_build_array('plan_change', NULL, %(key)s::text, NULL, NULL, json_build_object("
    "'from', old.plan, 'to', %(plan)s, 'seats', %(seats)s), NULL, 0, at.t)::text FROM old, at"
    " WHERE %(ledger)s AND (old.plan <> %(plan)s OR old.seats <> %(seats)s))"
    " SELECT created FROM up",
    "get_account": "SELECT plan, seats, adjustments::text FROM {s}.accounts WHERE id = %s",
    # A per-user record is locked behind the account's row (a user_global one is written by
    # other accounts' transactions too), made if missing in the same statement: an insert
    # and a separate lock could find it deleted by a sweep in between. The no-op update
    # changes no indexed column (a HOT update).
    "lock_owned": "INSERT INTO {s}.owned AS o (owner, counters, drop_after)"
    " VALUES (%s, '{{}}', 0) ON CONFLICT (owner) DO UPDATE SET counters = o.counters"
    " RETURNING counters",
    "put_owned": "UPDATE {s}.owned SET counters = %s::jsonb, drop_after = %s WHERE owner = %s",
    "drop_owned": "DELETE FROM {s}.owned WHERE owner = %s",
    "sweep_owned": "DELETE FROM {s}.owned WHERE owner IN (SELECT owner FROM {s}.owned"
    " WHERE drop_after <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
    "get_idempotency": "SELECT body FROM {s}.idempotency WHERE account = %s AND key = %s",
    "put_idempotency": "INSERT INTO {s}.idempotency (account, key, expires_at, body)"
    " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (account, key)"
    " DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
    "get_hold": "SELECT body FROM {s}.holds WHERE id = %s AND account = %s",
    "put_hold": "INSERT INTO {s}.holds (id, account, state, expires_at, body)"
    " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
    " expires_at = excluded.expires_at, body = excluded.body",
    "due_holds": "SELECT body FROM {s}.holds"
    " WHERE account = %s AND state = {held} AND expires_at <= %s",
    "due_accounts": "SELECT DISTINCT account FROM {s}.holds"
    " WHERE state = {held} AND expires_at <= %s LIMIT %s",
    "sweep_idempotency": "DELETE FROM {s}.idempotency WHERE (account, key) IN"
    " (SELECT account, key FROM {s}.idempotency WHERE expires_at <= %s"
    " LIMIT %s FOR UPDATE SKIP LOCKED)",
    "sweep_holds": "DELETE FROM {s}.holds WHERE id IN (SELECT id FROM {s}.holds"
    " WHERE state <> {held} AND expires_at <= %s LIMIT %s FOR UPDATE SKIP LOCKED)",
}
