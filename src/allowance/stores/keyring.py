"""Where each store keeps the service's API keys (digests only; see allowance/keys.py).

Keys are few and read through the service's cache, so every operation here is a plain
single-statement write or a small read: no scripts, no fast paths. Each keyring creates its
own table or hash on first use, apart from the decision schema. Each store makes its own
(``_make_keyring``) from this module's classes and its public methods (the Redis one is in
``redis_keys.py``); this module imports no store.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from allowance.errors import StoreError
from allowance.keys import ApiKey, bootstrap_key, digest


class KeyRing(ABC):
    @abstractmethod
    def add(self, key: ApiKey) -> None:
        """Insert a key, or replace the one with the same id (the bootstrap key)."""

    @abstractmethod
    def find(self, digest: str) -> ApiKey | None:
        """The key with this digest, revoked or not."""

    @abstractmethod
    def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""

    @abstractmethod
    def revoke(self, key_id: str, now: float) -> bool:
        """Mark a key revoked (the first revocation time stays); False when no such key."""

    @abstractmethod
    def touch(self, key_id: str, now: float) -> None:
        """Record a use (the service calls this at most once a minute per key)."""

    def ensure_bootstrap(self, secret: str, now: float) -> bool:
        """Make ``secret`` the bootstrap admin key unless it already is; a revoked one stays
        revoked (restarting with the same variable must not undo a revocation). True when
        the key is usable."""
        found = self.find(digest(secret))
        if found is None:
            self.add(bootstrap_key(secret, now))
            return True
        return found.revoked_at is None


class MemoryKeyRing(KeyRing):
    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}
        self._lock = threading.Lock()

    def add(self, key: ApiKey) -> None:
        with self._lock:
            self._keys[key.id] = key

    def find(self, digest: str) -> ApiKey | None:
        with self._lock:
            return next((k for k in self._keys.values() if k.digest == digest), None)

    def all(self) -> list[ApiKey]:
        with self._lock:
            return sorted(self._keys.values(), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str, now: float) -> bool:
        with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return False
            if key.revoked_at is None:
                self._keys[key_id] = replace(key, revoked_at=now)
            return True

    def touch(self, key_id: str, now: float) -> None:
        with self._lock:
            key = self._keys.get(key_id)
            if key is not None:
                self._keys[key_id] = key.with_use(now)


COLUMNS = "id, digest, scope, name, created_at, last_used_at, revoked_at, accounts"

# runs one statement with its arguments; returns the rows (none for a write) and the rowcount
Run = Callable[[str, tuple[Any, ...]], tuple[list[Any], int]]


def _key(row: Any) -> ApiKey:
    key_id, digest, scope, name, created_at, last_used_at, revoked_at, accounts = row
    bound = None if accounts is None else tuple(json.loads(accounts))
    return ApiKey(key_id, digest, scope, name, created_at, last_used_at, revoked_at, bound)


class SQLKeyRing(KeyRing):
    """One table, written by single statements through ``run`` (a store's ``execute``): the
    same SQL on SQLite and PostgreSQL, but for the placeholder ``mark`` (``?`` or ``%s``).
    ``table``: the table's name as the statements write it (quoted, schema-qualified)."""

    def __init__(self, run: Run, table: str, mark: str) -> None:
        self._run = run
        self._table = table
        self._marks = ", ".join([mark] * len(COLUMNS.split(", ")))
        self._mark = mark
        run(
            f"CREATE TABLE IF NOT EXISTS {table} (id text PRIMARY KEY,"
            " digest text NOT NULL UNIQUE, scope text NOT NULL, name text NOT NULL,"
            " created_at double precision NOT NULL, last_used_at double precision,"
            " revoked_at double precision, accounts text)",
            (),
        )
        self._add_accounts_column()

    def _add_accounts_column(self) -> None:
        """A table made before keys could be bound to accounts gets the column (JSON text;
        NULL: every account). Two processes may both try: the loser finds it there."""
        try:
            self._run(f"SELECT accounts FROM {self._table} WHERE 1 = 0", ())
        except StoreError:
            try:
                self._run(f"ALTER TABLE {self._table} ADD COLUMN accounts text", ())
            except StoreError:
                self._run(f"SELECT accounts FROM {self._table} WHERE 1 = 0", ())

    def add(self, key: ApiKey) -> None:
        r = key.to_record()
        r["accounts"] = None if key.accounts is None else json.dumps(list(key.accounts))
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
        self._run(
            f"INSERT INTO {self._table} ({COLUMNS}) VALUES ({self._marks})"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            tuple(r[c] for c in COLUMNS.split(", ")),
        )

    def find(self, digest: str) -> ApiKey | None:
        rows, _ = self._run(
            f"SELECT {COLUMNS} FROM {self._table} WHERE digest = {self._mark}", (digest,)
        )
        return _key(rows[0]) if rows else None

    def all(self) -> list[ApiKey]:
        rows, _ = self._run(f"SELECT {COLUMNS} FROM {self._table} ORDER BY 5, 1", ())
        return [_key(r) for r in rows]

    def revoke(self, key_id: str, now: float) -> bool:
        m = self._mark
        _, changed = self._run(
            f"UPDATE {self._table} SET revoked_at = coalesce(revoked_at, {m}) WHERE id = {m}",
            (now, key_id),
        )
        return changed > 0

    def touch(self, key_id: str, now: float) -> None:
        m = self._mark
        self._run(f"UPDATE {self._table} SET last_used_at = {m} WHERE id = {m}", (now, key_id))
