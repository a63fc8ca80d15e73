"""What the sync and async PostgreSQL stores share, free of I/O: the statements rendered for a
schema, error translation, and the view ``ops`` runs on (the SQL itself, one copy:
``postgres_sql.py``; the URL and its options: ``postgres_url.py``). See ``postgres.py`` for
the design."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
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
from allowance.stores.postgres_conn import WaitTimeout
from allowance.stores.postgres_sql import TEMPLATES
from allowance.view import AccountView, NotLoaded, Preload

Query = tuple[str, tuple[Any, ...]]  # a statement and its parameters
#: runs a read in the open transaction and returns the first column of every row
Fetch = Callable[[str, tuple[Any, ...]], list[Any]]
_encode = json.JSONEncoder(separators=(",", ":")).encode

SWEEP_EVERY = 512  # upkeep.py: a batch larger than what the operations in between add
SWEEP_BATCH = 1024
LOCK_NAMESPACE = 0x616C6C6F  # "allo": first key of the advisory lock around schema changes
RV = TypeVar("RV")

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
    """``postgres_sql.TEMPLATES`` rendered for one schema (once per store)."""
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
        self._events: list[Query] = []  # written last, under lock_events (postgres_sql.TEMPLATES)
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
