"""``postgresql://user@host:port/db``: PostgreSQL through psycopg 3 and a ``psycopg_pool`` pool.

URL options, removed before the rest goes to libpq: ``schema`` (default ``allowance``; every
table lives in it), ``pool_min`` / ``pool_max`` (default 1 / 10). The others are libpq's
(``connect_timeout`` defaults to 10 s here, not forever).

Each operation is one READ COMMITTED transaction: the account's row is locked with ``SELECT ...
FOR UPDATE``, the shared operations of ``ops.py`` run on it, and its counters (one ``jsonb``
value, as in SQLite) are written back by one ``UPDATE`` only if they changed. Two decisions on
one account queue on the row lock and the second reads what the first committed: no lost
update. Any error rolls the whole transaction back.

Round trips: two per decision, granted or not: ``BEGIN`` and the locking ``SELECT`` in one
pipelined flight, the ``UPDATE`` (if any) and ``COMMIT`` in the second, which waits for the WAL
flush. An idempotency key adds one (the read; its write rides with the ``COMMIT``), as does each
read of a hold. A transaction that wrote nothing (a denial, ``check``, ``usage``) still logged
its row lock, so it commits with ``synchronous_commit = off``: a crash could lose only the lock.

Time: with no clock given, it is the server's ``clock_timestamp()`` read after the row lock is
held, so decisions on one account are ordered in time as they commit. In the locking select
list itself it would be computed by the scan below ``LockRows``, before the wait (checked on
PostgreSQL 15: behind a holder that committed without changing the row, the waiter got the
time from before its 1 s wait; only an updated row made the READ COMMITTED re-check compute it
again). Selected from a ``MATERIALIZED`` CTE that takes the lock, it is read after the wait, in
the same statement. ``now()`` is the transaction's start, also before the wait.

Schema: created by the first store to start, under an advisory lock (two ``CREATE ... IF NOT
EXISTS`` at once can still collide), versioned in ``schema_version``; a newer one is refused.
Cleanup: every few thousand operations a process deletes a bounded batch of expired idempotency
records and settled reservations (``SKIP LOCKED``: sweepers never queue on each other) and
settles expired reservations; ``Limiter.sweep()`` does all of it.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from allowance import ops
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.ops import HOLD_KEEP
from allowance.state import HELD, Counter, Hold, IdempotencyRecord
from allowance.stores.base import NO_PRELOAD, AccountView, Preload, Store
from allowance.types import Account

T = TypeVar("T")
Conn = psycopg.Connection[TupleRow]
log = logging.getLogger(__name__)
_encode = json.JSONEncoder(separators=(",", ":")).encode

SCHEMA_VERSION = 1
SWEEP_EVERY = 2048
SWEEP_BATCH = 500
LOCK_NAMESPACE = 0x616C6C6F  # "allo": first key of the advisory lock around schema changes
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # unquoted, within NAMEDATALEN
OWN_OPTIONS = ("schema", "pool_min", "pool_max")

# SQL shared with the async store: ``{s}`` is the schema, ``{held}`` the literal 'held' (a
# literal, not a parameter, so the planner can use the partial index on held holds).
DDL = (
    "CREATE SCHEMA IF NOT EXISTS {s}",
    "CREATE TABLE IF NOT EXISTS {s}.schema_version (version integer NOT NULL,"
    " one boolean PRIMARY KEY DEFAULT true CHECK (one))",  # a single row
    # counters: {limit: [start, used, entries]}; fillfactor leaves room for HOT updates
    "CREATE TABLE IF NOT EXISTS {s}.accounts (id text PRIMARY KEY, plan text NOT NULL,"
    " seats integer NOT NULL, next_hold_expiry double precision,"
    " counters jsonb NOT NULL DEFAULT '{{}}') WITH (fillfactor = 90)",
    "CREATE TABLE IF NOT EXISTS {s}.holds (id text PRIMARY KEY, account text NOT NULL,"
    " state text NOT NULL, expires_at double precision NOT NULL, body jsonb NOT NULL)",
    "CREATE INDEX IF NOT EXISTS holds_held ON {s}.holds (account, expires_at) WHERE state = {held}",
    "CREATE INDEX IF NOT EXISTS holds_expires_at ON {s}.holds (expires_at)",
    "CREATE TABLE IF NOT EXISTS {s}.idempotency (account text NOT NULL, key text NOT NULL,"
    " expires_at double precision NOT NULL, body jsonb NOT NULL, PRIMARY KEY (account, key))",
    "CREATE INDEX IF NOT EXISTS idempotency_expires_at ON {s}.idempotency (expires_at)",
)
TEMPLATES = {
    "version": "SELECT max(version) FROM {s}.schema_version",
    "set_version": "INSERT INTO {s}.schema_version (version) VALUES (%s)"
    " ON CONFLICT (one) DO UPDATE SET version = excluded.version",
    "lock": "WITH a AS MATERIALIZED (SELECT plan, seats, next_hold_expiry, counters"
    " FROM {s}.accounts WHERE id = %s FOR UPDATE)"
    " SELECT plan, seats, next_hold_expiry, counters,"
    " extract(epoch FROM clock_timestamp())::float8 FROM a",
    "write": "UPDATE {s}.accounts SET counters = %s::jsonb, next_hold_expiry = %s WHERE id = %s",
    "put_account": "INSERT INTO {s}.accounts AS a (id, plan, seats) VALUES (%s, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET plan = excluded.plan, seats = excluded.seats"
    " RETURNING (a.xmax = 0)",
    "get_account": "SELECT plan, seats FROM {s}.accounts WHERE id = %s",
    "get_idempotency": "SELECT body FROM {s}.idempotency WHERE account = %s AND key = %s",
    "put_idempotency": "INSERT INTO {s}.idempotency (account, key, expires_at, body)"
    " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT (account, key)"
    " DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
    "get_hold": "SELECT body FROM {s}.holds WHERE id = %s AND account = %s",
    "put_hold": "INSERT INTO {s}.holds (id, account, state, expires_at, body)"
    " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
    " expires_at = excluded.expires_at, body = excluded.body",
    "next_hold_expiry": "SELECT min(expires_at) FROM {s}.holds"
    " WHERE account = %s AND state = {held}",
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
NOW = "SELECT extract(epoch FROM clock_timestamp())::float8"
BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"  # whatever the server's default: the lock decides
COMMIT = "COMMIT"
NO_WAIT = "SET LOCAL synchronous_commit = off"  # see transact: a commit that wrote nothing
ROLLBACK = "ROLLBACK"


def _render(template: str, schema: str) -> str:
    return sql.SQL(template).format(s=sql.Identifier(schema), held=sql.Literal(HELD)).as_string()


def queries(schema: str) -> dict[str, str]:
    """``TEMPLATES`` rendered for one schema (once per store)."""
    return {name: _render(template, schema) for name, template in TEMPLATES.items()}


class PostgresView(AccountView):
    """One account inside its transaction. Reads go to the server; writes are pipelined and
    travel with the ``COMMIT``."""

    def __init__(self, store: PostgresStore, conn: Conn, account_id: str, row: Any) -> None:
        self._store = store
        self._q = store.sql
        self._conn = conn
        self.account_id = account_id
        self.plan, self.seats, self.next_hold_expiry, stored = row[:4]
        self._counters = {
            name: Counter(start, used, entries) for name, (start, used, entries) in stored.items()
        }
        self.dirty = False  # the row needs writing
        self.wrote = False  # anything was written

    def counters(self, names: Iterable[str]) -> dict[str, Counter]:
        stored = self._counters
        out = {}
        for name in names:
            counter = stored.get(name)
            if counter is None:
                counter = stored[name] = Counter()
            out[name] = counter
        return out

    def save_counters(self, counters: dict[str, Counter]) -> None:
        self.dirty = self.wrote = True  # written once, by flush(), however many limits changed

    def flush(self, now: float) -> None:
        """Queue the row's write, leaving out counters whose windows have closed."""
        if not self.dirty:
            return
        policy = self._store.policy
        keep = {}
        for name, c in self._counters.items():
            if policy is not None:  # without one (a bare store) nothing can be judged stale
                limit = policy.limits.get(name)
                if limit is None:
                    continue  # a limit the policy no longer has
                expires = limit.window.expires_at(c)
                if expires is None or expires <= now:
                    continue
            keep[name] = (c.start, c.used, c.entries or None)
        self._conn.execute(
            self._q["write"], (_encode(keep), self.next_hold_expiry, self.account_id), prepare=True
        )

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        row = self._conn.execute(self._q["get_idempotency"], (self.account_id, key)).fetchone()
        return None if row is None else IdempotencyRecord.from_json(row[0])

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        self._conn.execute(
            self._q["put_idempotency"],
            (self.account_id, key, record.expires_at, _encode(record.to_json())),
        )
        self.wrote = True

    def get_hold(self, hold_id: str) -> Hold | None:
        row = self._conn.execute(self._q["get_hold"], (hold_id, self.account_id)).fetchone()
        return None if row is None else Hold.from_json(row[0])

    def put_hold(self, hold: Hold) -> None:
        self._conn.execute(
            self._q["put_hold"],
            (hold.id, hold.account, hold.state, hold.expires_at, _encode(hold.to_json())),
        )
        nxt = self.next_hold_expiry
        if hold.state == HELD:  # a new (or unchanged) held hold: no need to ask the server
            self.next_hold_expiry = hold.expires_at if nxt is None else min(nxt, hold.expires_at)
        else:  # it may have been the earliest: ask (the upsert above runs first, in order)
            row = self._conn.execute(self._q["next_hold_expiry"], (self.account_id,)).fetchone()
            self.next_hold_expiry = None if row is None else row[0]
        self.dirty = self.wrote = True

    def due_holds(self, now: float) -> list[Hold]:
        rows = self._conn.execute(self._q["due_holds"], (self.account_id, now)).fetchall()
        return [Hold.from_json(r[0]) for r in rows]


class PostgresStore(Store):
    scheme = "postgresql"
    blocking = True

    def __init__(
        self, conninfo: str, *, schema: str = "allowance", pool_min: int = 1, pool_max: int = 10
    ) -> None:
        if not IDENTIFIER.fullmatch(schema):
            raise ConfigurationError(
                f"store: schema must be a plain SQL identifier (letters, digits, _), got {schema!r}"
            )
        if not 0 <= pool_min <= pool_max or pool_max < 1:
            raise ConfigurationError(
                f"store: need 0 <= pool_min <= pool_max and pool_max >= 1"
                f" (got pool_min={pool_min}, pool_max={pool_max})"
            )
        self.schema = schema
        self.sql = queries(schema)
        self._ops = itertools.count(1)
        with _Translate():
            # One direct connection first: an unreachable server fails here at once (a pool
            # would retry in the background until its timeout), and it creates the schema.
            with psycopg.connect(conninfo, autocommit=True) as conn:
                self._migrate(conn)
            self._pool: ConnectionPool[Conn] = ConnectionPool(
                conninfo,
                min_size=pool_min,
                max_size=pool_max,
                kwargs={"autocommit": True},  # transactions are explicit, to pipeline BEGIN
                open=True,
                name=f"allowance-{schema}",
            )
            try:
                self._pool.wait(timeout=30.0)
            except BaseException:
                self._pool.close()
                raise

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("postgresql", "postgres"):
            raise ConfigurationError(f"store: not a postgresql:// URL: {_redact(url)!r}")
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in OWN_OPTIONS:
                ours[key] = value
            else:
                theirs.append((key, value))
        if not any(key == "connect_timeout" for key, _ in theirs):
            theirs.append(("connect_timeout", "10"))  # libpq's default is to wait forever
        # only the query is rewritten: urlunsplit would drop the "//" of postgresql:///db
        conninfo = url.split("?", 1)[0] + "?" + urlencode(theirs, quote_via=quote)
        try:
            conninfo_to_dict(conninfo)  # libpq's own check of its options
        except psycopg.Error as exc:
            raise ConfigurationError(f"store: {exc} in {_redact(url)!r}") from exc
        pool_min, pool_max = (
            _whole(option, ours.get(option, default), url)
            for option, default in (("pool_min", "1"), ("pool_max", "10"))
        )
        schema = ours.get("schema", "allowance")
        return cls(conninfo, schema=schema, pool_min=pool_min, pool_max=pool_max)

    def _migrate(self, conn: Conn) -> None:
        """Create or check the schema, one process at a time (CREATE ... IF NOT EXISTS alone
        is not safe when two run at once: both may try to insert the same catalog row)."""
        schema, q = self.schema, self.sql
        with conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                (LOCK_NAMESPACE, zlib.crc32(schema.encode()) - 2**31),  # to signed int4
            )
            found = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_tables"
                " WHERE schemaname = %s AND tablename = 'schema_version'",
                (schema,),
            ).fetchone()
            version = conn.execute(q["version"]).fetchone() if found else None
            current = version[0] if version is not None and version[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise ConfigurationError(
                    f"store: schema {schema!r} is at version {current}, written by a newer"
                    f" allowance (this one knows up to {SCHEMA_VERSION})"
                )
            if current < SCHEMA_VERSION:
                for statement in DDL:
                    conn.execute(_render(statement, schema))
                conn.execute(q["set_version"], (SCHEMA_VERSION,))

    def _one(self, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        """The first row of a single-statement transaction; () when there is none."""
        with _Translate(), self._pool.connection() as conn:
            return conn.execute(query, params).fetchone() or ()

    def now(self) -> float:
        return float(self._one(NOW)[0])

    def put_account(self, account_id: str, plan: str, seats: int) -> bool:
        return bool(self._one(self.sql["put_account"], (account_id, plan, seats))[0])

    def get_account(self, account_id: str) -> Account | None:
        row = self._one(self.sql["get_account"], (account_id,))
        return Account(account_id, row[0], row[1]) if row else None

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        result, when = self._transact(account_id, now, fn)
        if next(self._ops) % SWEEP_EVERY == 0:
            try:
                self._sweep(when, SWEEP_BATCH)
            except StoreError:  # the decision is committed; the next round will sweep again
                log.warning("allowance: background sweep failed", exc_info=True)
        return result

    def _transact(
        self, account_id: str, now: float | None, fn: Callable[[AccountView, float], T]
    ) -> tuple[T, float]:
        with _Translate(), self._pool.connection() as conn:
            try:
                with conn.pipeline():
                    conn.execute(BEGIN, prepare=False)
                    try:
                        cur = conn.execute(self.sql["lock"], (account_id,), prepare=True)
                        row = cur.fetchone()
                        if row is None:
                            raise UnknownAccount(account_id)
                        if now is None:
                            now = float(row[4])  # read after the lock was granted (see top)
                        view = PostgresView(self, conn, account_id, row)
                        result = fn(view, now)
                        view.flush(now)
                    except BaseException:
                        with suppress(psycopg.Error):  # rides with the pipeline's last flight
                            conn.execute(ROLLBACK, prepare=False)
                        raise
                    if not view.wrote:  # only the row lock: a crash could lose nothing
                        conn.execute(NO_WAIT, prepare=False)
                    conn.execute(COMMIT, prepare=False)
            except BaseException:
                _rollback(conn)  # only if the ROLLBACK above could not run
                raise
        return result, now

    def sweep(self, now: float | None = None) -> int:
        return self._sweep(self.now() if now is None else now, None)

    def _sweep(self, now: float, batch: int | None) -> int:
        """Settle expired reservations, then delete what has expired; ``batch`` None = all."""
        q, policy = self.sql, self.policy
        if policy is not None:
            with _Translate(), self._pool.connection() as conn:
                due = [r[0] for r in conn.execute(q["due_accounts"], (now, batch)).fetchall()]
            for account in due:  # each in its own transaction, with the account locked
                with suppress(UnknownAccount):
                    self._transact(
                        account, now, lambda view, t: ops.settle_due_holds(policy, view, t)
                    )
        removed = 0
        with _Translate(), self._pool.connection() as conn:
            for statement, cutoff in (
                (q["sweep_idempotency"], now),
                (q["sweep_holds"], now - HOLD_KEEP),
            ):
                removed += conn.execute(statement, (cutoff, batch)).rowcount
        return removed

    def close(self) -> None:
        self._pool.close()


def _rollback(conn: Conn) -> None:
    """End a failed transaction so the connection goes back to the pool clean. A connection
    that is broken or mid-query is left to the pool, which discards it."""
    if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with suppress(psycopg.Error):
            conn.rollback()


def _whole(option: str, text: str, url: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ConfigurationError(
            f"store: {option} must be a whole number, got {text!r} in {_redact(url)!r}"
        )
    return int(text)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Translate:
    """psycopg (and pool) errors become ``StoreError`` (chained), at this one point."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None and issubclass(exc_type, psycopg.Error):
            raise StoreError(f"postgresql: {str(exc).strip()}") from exc
