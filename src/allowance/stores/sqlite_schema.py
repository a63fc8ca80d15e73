"""The SQLite store's tables (``sqlite.py``), made or brought up to date when a store opens a
file: each table and index is created if missing (a newer schema only adds), a file of schema
1 gets its ``adjustments`` column, and ``user_version`` says which schema wrote the file."""

from __future__ import annotations

import sqlite3

# 2: accounts.adjustments; 3: owned (per-user counters); 4: events; 5: ledger
SCHEMA_VERSION = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    plan TEXT NOT NULL,
    seats INTEGER NOT NULL,
    next_hold_expiry REAL,
    counters TEXT NOT NULL DEFAULT '{}',  -- {limit: [start, used, entries]}
    adjustments TEXT  -- the account's own terms (adjust.py), NULL for none
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    state TEXT NOT NULL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS holds_account ON holds (account, state, expires_at);
CREATE INDEX IF NOT EXISTS holds_expires_at ON holds (expires_at);
CREATE TABLE IF NOT EXISTS idempotency (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (account, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expires_at ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- per-user counters (owners.record_key), apart from the account's row so that it does not
-- grow with its users (drop_after: when the last of them has nothing left to count)
CREATE TABLE IF NOT EXISTS owned (
    owner TEXT PRIMARY KEY,
    counters TEXT NOT NULL,
    drop_after REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS owned_drop_after ON owned (drop_after);
-- events (sql_events.py): the outbox, and the marks still standing
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    account TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_account ON events (account, id);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS event_marks (
    account TEXT NOT NULL,
    mark TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (account, mark)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_marks_until ON event_marks (until);
-- the ledger (sql_ledger.py), AUTOINCREMENT: an id (a row's cursor) is never given twice
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    account TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger (account, id);
"""


def written_by_newer(conn: sqlite3.Connection) -> bool:
    """Whether the file was written by a newer schema than this one (not to be touched)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version > SCHEMA_VERSION


def create(conn: sqlite3.Connection) -> None:
    """The tables made or brought up to date, inside the caller's transaction."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    columns = {r[1] for r in conn.execute("PRAGMA table_info(accounts)")}
    if "adjustments" not in columns:  # a file of schema 1
        conn.execute("ALTER TABLE accounts ADD COLUMN adjustments TEXT")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
