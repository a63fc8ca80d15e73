"""One SQLite account inside its ``BEGIN IMMEDIATE`` transaction (``sqlite.py``): the
account's row read up front, per-user records and reservations read as the operation asks
(the transaction holds the write lock, so a read on demand costs no round trip), and every
write made in ``flush`` on the same connection."""

from __future__ import annotations

import json
import json.scanner
import sqlite3
from typing import Any

from allowance import adjust, engine, owners
from allowance.events import NewEvent
from allowance.ledger import Entry
from allowance.state import HELD, Counter, Hold, IdempotencyRecord, from_rows, rows
from allowance.stores import sql_events, sql_ledger
from allowance.stores.base import Store
from allowance.view import AccountView

# bound once: json.dumps/loads re-check their arguments and run a regex on every call
_encode = json.JSONEncoder(separators=(",", ":")).encode
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]


def _decoded(stored: str) -> dict[str, Counter]:
    """Counters as a row keeps them (``state.rows``), from its JSON text."""
    return from_rows(_scan(stored, 0)[0])


class SQLiteView(AccountView):
    def __init__(
        self,
        store: Store,
        conn: sqlite3.Connection,
        account_id: str,
        row: Any,
        events: dict[str, str],
        ledger: dict[str, str],
    ) -> None:
        self._store = store
        self._events = events  # sql_events.statements
        self._ledger = ledger  # sql_ledger.statements
        self._conn = conn
        self.account_id = account_id
        self.plan, self.seats, self.next_hold_expiry, stored, terms = row
        self.adjustments = adjust.decode(terms)
        self._counters = _decoded(stored)
        self._owned = {}
        self._owned_dirty: set[str] = set()
        self.dirty = False

    def save_counters(self, counters: dict[str, Counter]) -> None:
        self.dirty = True  # written once, by flush(), however many limits changed

    def load_owned(self, owner: str) -> dict[str, Counter]:
        row = self._conn.execute(
            "SELECT counters FROM owned WHERE owner = ?",
            (owners.record_key(self.account_id, owner),),
        ).fetchone()
        return {} if row is None else _decoded(row[0])

    def save_owned(self, owner: str) -> None:
        self._owned_dirty.add(owner)

    def flush(self, now: float) -> None:
        """Write the counters back, leaving out those that hold nothing any more."""
        if not (self.dirty or self._owned_dirty):
            return
        policy = self._store.policy
        assert policy is not None
        for owner in sorted(self._owned_dirty):
            live, last = engine.live_counters(policy, self._owned[owner], now)
            key = owners.record_key(self.account_id, owner)
            if live:
                self._conn.execute(
                    "INSERT OR REPLACE INTO owned (owner, counters, drop_after) VALUES (?, ?, ?)",
                    (
                        key,
                        _encode(rows(live)),
                        last,
                    ),
                )
            else:
                self._conn.execute("DELETE FROM owned WHERE owner = ?", (key,))
        if not self.dirty:
            return
        live, _ = engine.live_counters(policy, self._counters, now)
        keep = rows(live)
        self._conn.execute(
            "UPDATE accounts SET counters = ? WHERE id = ?",
            (_encode(keep), self.account_id),
        )

    def save_adjustments(self) -> None:
        self._conn.execute(
            "UPDATE accounts SET adjustments = ? WHERE id = ?",
            (adjust.encode(self.adjustments), self.account_id),
        )

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        row = self._conn.execute(
            "SELECT body FROM idempotency WHERE account = ? AND key = ?", (self.account_id, key)
        ).fetchone()
        return None if row is None else IdempotencyRecord.from_json(json.loads(row[0]))

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO idempotency (account, key, expires_at, body)"
            " VALUES (?, ?, ?, ?)",
            (self.account_id, key, record.expires_at, json.dumps(record.to_json())),
        )

    def get_hold(self, hold_id: str) -> Hold | None:
        row = self._conn.execute(
            "SELECT body FROM holds WHERE id = ? AND account = ?", (hold_id, self.account_id)
        ).fetchone()
        return None if row is None else Hold.from_json(json.loads(row[0]))

    def put_hold(self, hold: Hold) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO holds (id, account, state, expires_at, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (hold.id, hold.account, hold.state, hold.expires_at, json.dumps(hold.to_json())),
        )
        (nxt,) = self._conn.execute(
            "SELECT min(expires_at) FROM holds WHERE account = ? AND state = ?",
            (self.account_id, HELD),
        ).fetchone()
        self.next_hold_expiry = nxt
        self._conn.execute(
            "UPDATE accounts SET next_hold_expiry = ? WHERE id = ?", (nxt, self.account_id)
        )

    def emit(self, event: NewEvent) -> None:
        mark, put = sql_events.event_writes(self._events, event)
        if mark is None or self._conn.execute(*mark).fetchone() is not None:
            self._conn.execute(*put)

    def record(self, rows: list[Entry]) -> None:
        self._conn.executemany(self._ledger["put_row"], sql_ledger.row_writes(rows))

    def due_holds(self, now: float) -> list[Hold]:
        rows = self._conn.execute(
            "SELECT body FROM holds WHERE account = ? AND state = ? AND expires_at <= ?",
            (self.account_id, HELD, now),
        ).fetchall()
        return [Hold.from_json(json.loads(r[0])) for r in rows]
