"""What the sync and async PostgreSQL stores share, free of I/O: the SQL (one copy), error
translation, and the view ``ops`` runs on (the URL and its options: ``postgres_url.py``). See
``postgres.py`` for the design."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import PoolTimeout

from allowance import adjust, engine, ledger, owners
from allowance.errors import StoreError, StoreUnavailable
from allowance.events import NewEvent
from allowance.ledger import Entry
from allowance.policy import Policy
from allowance.state import HELD, Counter, Hold, IdempotencyRecord, from_rows, rows
from allowance.stores import sql_ledger
from allowance.stores.postgres_conn import WaitTimeout
from allowance.view import AccountView, NotLoaded, Preload

Query = tuple[str, tuple[Any, ...]]  # a statement and its parameters
#: runs a read in the open transaction and returns the first column of every row
Fetch = Callable[[str, tuple[Any, ...]], list[Any]]
_encode = json.JSONEncoder(separators=(",", ":")).encode

# 2: the decide() function of the fast path; 3: its typed-spec version; 4: clock steps back;
# 5: the rules as generic arrays; 6: per-request ceilings; 7: costs (credits); 8: load factors;
# 9: an account's own terms (accounts.adjustments, read by decide_v9()); 10: owned;
# 11: owned records in the fast path (decide_v11()); 12: events and event_marks, decide_v12()
# leaves a charge crossing an event level to the transaction path; 13: the ledger, which
# decide_v13() writes
SCHEMA_VERSION = 13
SWEEP_EVERY = 512  # upkeep.py: a batch larger than what the operations in between add
SWEEP_BATCH = 1024
LOCK_NAMESPACE = 0x616C6C6F  # "allo": first key of the advisory lock around schema changes
RV = TypeVar("RV")

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
# Transactions are explicit (to pipeline BEGIN). psycopg's own automatic preparing is off: its
# names (_pg3_0, ...) stand for different statements on different clients, and behind a
# transaction-pooling PgBouncer one client's name would run another's statement.
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True, "prepare_threshold": None}
NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"  # whatever the server's default: the lock decides
COMMIT = "COMMIT"
NO_WAIT = "SET LOCAL synchronous_commit = off"  # a commit that wrote nothing (see postgres.py)
ROLLBACK = "ROLLBACK"


def render(template: str, schema: str) -> str:
    return sql.SQL(template).format(s=sql.Identifier(schema), held=sql.Literal(HELD)).as_string()


def queries(schema: str) -> dict[str, str]:
    """``TEMPLATES`` rendered for one schema (once per store)."""
    return {name: render(template, schema) for name, template in TEMPLATES.items()}


def record_reads(q: dict[str, str], account_id: str, preload: Preload) -> list[Query]:
    """The reads of the records ``preload`` names, queued right behind the locking select (so
    they run with the row locked, in the same flight); ``PostgresView`` takes their results
    in this order."""
    reads = []
    if preload.idempotency_key is not None:
        reads.append((q["get_idempotency"], (account_id, preload.idempotency_key)))
    if preload.hold_id is not None:
        reads.append((q["get_hold"], (preload.hold_id, account_id)))
    return reads


def owner_reads(q: dict[str, str], account_id: str, names: Iterable[str]) -> list[Query]:
    """For each per-user record, the statement that locks it and answers its counters."""
    return [(q["lock_owned"], (owners.record_key(account_id, o),)) for o in names]


def due_read(q: dict[str, str], account_id: str, row: Sequence[Any], now: float) -> Query | None:
    """The read of the account's expired held holds, or None when the row says there are
    none (``next_hold_expiry`` is the earliest held expiry: one more flight, only then)."""
    due = row[2]
    if due is None or due > now:
        return None
    return q["due_holds"], (account_id, now)


class PostgresView(AccountView):
    """One account inside its transaction, without I/O: built from the locked row and the
    records read with it, it collects its writes in ``writes`` for the store to run, in order,
    before ``COMMIT``. A record nobody preloaded is read through ``fetch`` (the sync store's;
    the async store always preloads, and a miss is a ``StoreError``)."""

    def __init__(
        self,
        q: dict[str, str],
        policy: Policy | None,
        account_id: str,
        row: Sequence[Any],
        now: float,
        preload: Preload,
        found: Iterable[Any],
        due: Iterable[Any],
        fetch: Fetch | None = None,
        owned: dict[str, Any] | None = None,
    ) -> None:
        self._q = q
        self._policy = policy
        self._now = now
        self._due_until = math.inf if preload.held else now  # the held holds read up to then
        self._fetch = fetch
        self.account_id = account_id
        self.plan, self.seats, self.next_hold_expiry, stored = row[:4]
        self.adjustments = adjust.decode(row[5])
        self._counters = from_rows(stored)
        # Records as this operation sees them, by key / id (None: none stored). A write
        # replaces what was read, so a hold settled as expired and then read again for a
        # commit is seen as expired, not as the stale preload.
        self._keys: dict[str, Any] = {}
        self._holds: dict[str, Any] = {}
        bodies = iter(found)
        if preload.idempotency_key is not None:
            self._keys[preload.idempotency_key] = next(bodies)
        if preload.hold_id is not None:
            self._holds[preload.hold_id] = next(bodies)
        for body in due:  # every held hold expired at ``_due_until`` (see due_read)
            self._holds[body["id"]] = body
        self._owned_read = owned or {}  # per-user records read, by owner (jsonb or None)
        self._owned = {}
        self._owned_dirty: set[str] = set()
        self.writes: list[Query] = []
        self._events: list[Query] = []  # written last, under lock_events (see TEMPLATES)
        self._dirty = False  # the counters changed
        self._holds_changed = False  # next_hold_expiry must be recomputed
        self._terms_dirty = False

    def save_counters(self, counters: dict[str, Counter]) -> None:
        self._dirty = True  # written once, by finish(), however many limits changed

    def emit(self, event: NewEvent) -> None:
        if not self._events:
            self._events.append((self._q["lock_events"], ()))
        body = (event.at, event.account, event.body())
        if event.mark is None:
            self._events.append((self._q["put_event"], body))
        else:
            marked = (event.account, event.mark, event.until, event.at, *body)
            self._events.append((self._q["put_marked_event"], marked))

    def save_adjustments(self) -> None:
        self._terms_dirty = True

    def record(self, rows: list[Entry]) -> None:
        times, bodies = [e.at for e in rows], [e.body() for e in rows]
        self.writes.append((self._q["put_rows"], (times, self.account_id, bodies)))

    def load_owned(self, owner: str) -> dict[str, Counter]:
        if owner not in self._owned_read:
            raise NotLoaded([owner])  # the transaction locks it, then runs the operation again
        stored = self._owned_read[owner] or {}
        return from_rows(stored)

    def save_owned(self, owner: str) -> None:
        self._owned_dirty.add(owner)

    def _read(self, what: str, query: str, params: tuple[Any, ...]) -> list[Any]:
        if self._fetch is None:
            raise StoreError(f"postgresql: {what} was not preloaded for this operation")
        return self._fetch(self._q[query], params)

    def _read_one(self, what: str, query: str, params: tuple[Any, ...]) -> Any:
        rows = self._read(what, query, params)
        return rows[0] if rows else None

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        if key not in self._keys:
            what = f"idempotency key {key!r}"
            self._keys[key] = self._read_one(what, "get_idempotency", (self.account_id, key))
        body = self._keys[key]
        return None if body is None else IdempotencyRecord.from_json(body)

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        body = self._keys[key] = record.to_json()
        self.writes.append(
            (self._q["put_idempotency"], (self.account_id, key, record.expires_at, _encode(body)))
        )

    def get_hold(self, hold_id: str) -> Hold | None:
        if hold_id not in self._holds:
            what = f"reservation {hold_id!r}"
            self._holds[hold_id] = self._read_one(what, "get_hold", (hold_id, self.account_id))
        body = self._holds[hold_id]
        return None if body is None else Hold.from_json(body)

    def put_hold(self, hold: Hold) -> None:
        body = self._holds[hold.id] = hold.to_json()  # a snapshot: later changes are not saved
        self.writes.append(
            (
                self._q["put_hold"],
                (hold.id, hold.account, hold.state, hold.expires_at, _encode(body)),
            )
        )
        if hold.state == HELD:
            nxt = self.next_hold_expiry
            self.next_hold_expiry = hold.expires_at if nxt is None else min(nxt, hold.expires_at)
        # A hold leaving the held state leaves next_hold_expiry as it was: a lower bound, so
        # settle_due_holds still finds what is due (due_holds skips what was settled), and the
        # row gets the exact value from the server (write_holds).
        self._holds_changed = True

    def due_holds(self, now: float) -> list[Hold]:
        if now > self._due_until:  # later than what was loaded: ops never asks this
            for body in self._read("later due reservations", "due_holds", (self.account_id, now)):
                self._holds.setdefault(body["id"], body)  # a write made here wins
        return [
            Hold.from_json(body)
            for body in self._holds.values()
            if body is not None and body["state"] == HELD and body["expires_at"] <= now
        ]

    def finish(self) -> list[Query]:
        """``writes`` with the account row's ``UPDATE`` last, leaving out counters whose
        windows have closed (call once, after the operation)."""
        if self._terms_dirty:
            terms = adjust.encode(self.adjustments)
            self.writes.append((self._q["write_terms"], (terms, self.account_id)))
        policy, now = self._policy, self._now
        for owner in sorted(self._owned_dirty):
            key = owners.record_key(self.account_id, owner)
            counters, last = self._owned[owner], math.inf
            if policy is not None:
                counters, last = engine.live_counters(policy, counters, now)
            if counters:
                self.writes.append((self._q["put_owned"], (_encode(rows(counters)), last, key)))
            else:
                self.writes.append((self._q["drop_owned"], (key,)))
        if not (self._dirty or self._holds_changed):
            return self.writes + self._events
        # without a policy (a bare store) nothing can be judged stale: keep everything
        live = (
            self._counters
            if policy is None
            else engine.live_counters(policy, self._counters, now)[0]
        )
        query = self._q["write_holds" if self._holds_changed else "write"]
        self.writes.append((query, (_encode(rows(live)), self.account_id)))
        return self.writes + self._events


def account_params(
    policy: Policy | None, account_id: str, plan: str, seats: int, now: float | None
) -> dict[str, Any]:
    """The parameters of ``put_account``."""
    events = policy is None or policy.events
    keeps = policy is None or policy.ledger_keep is not None
    return {
        "id": account_id,
        "plan": plan,
        "seats": seats,
        "events": events,
        "at": now,
        "ledger": keeps,
        "key": ledger.acting.get(),
    }


class Translate:
    """psycopg (and pool) errors become ``StoreError`` (chained), at this one point: a lost,
    refused or timed-out connection a ``StoreUnavailable`` (``maybe_applied`` False only when
    no connection was obtained, so nothing was sent). A plain context manager, so it wraps
    awaits as well."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None or not issubclass(exc_type, psycopg.Error):
            return
        if issubclass(exc_type, PoolTimeout):
            raise StoreUnavailable(
                f"postgresql: no connection within the timeout ({str(exc).strip()})",
                maybe_applied=False,
            ) from exc
        if issubclass(exc_type, WaitTimeout):
            raise StoreUnavailable("postgresql: no answer within the timeout") from exc
        if issubclass(exc_type, psycopg.OperationalError | psycopg.InterfaceError):
            raise StoreUnavailable(f"postgresql: {str(exc).strip()}") from exc
        raise StoreError(f"postgresql: {str(exc).strip()}") from exc
