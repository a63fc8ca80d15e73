"""Where each store keeps the service's API keys (digests only; see allowance/keys.py).

Keys are few and read through the service's cache, so every operation here is a plain
single-statement write or a small read: no scripts, no fast paths. Each keyring creates its
own table or hash on first use, apart from the decision schema.
"""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from allowance.keys import ApiKey, bootstrap_key, digest

if TYPE_CHECKING:
    from allowance.stores.postgres import PostgresStore
    from allowance.stores.redis import RedisStore
    from allowance.stores.sqlite import SQLiteStore


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


COLUMNS = "id, digest, scope, name, created_at, last_used_at, revoked_at"


def _row(row: Any) -> ApiKey:
    key_id, digest, scope, name, created_at, last_used_at, revoked_at = row
    return ApiKey(key_id, digest, scope, name, created_at, last_used_at, revoked_at)


class SQLiteKeyRing(KeyRing):
    CREATE = (
        "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,"
        " scope TEXT NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL,"
        " last_used_at REAL, revoked_at REAL)"
    )

    def __init__(self, store: SQLiteStore) -> None:
        from allowance.stores.sqlite import _Translate

        self._store = store
        self._translate = _Translate
        self._run(self.CREATE)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        with self._translate():
            cursor = self._store._conn().execute(sql, args)
            return cursor.fetchall(), cursor.rowcount

    def add(self, key: ApiKey) -> None:
        r = key.to_record()
        self._run(
            f"INSERT OR REPLACE INTO api_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            tuple(r[c] for c in COLUMNS.split(", ")),
        )

    def find(self, digest: str) -> ApiKey | None:
        rows, _ = self._run(f"SELECT {COLUMNS} FROM api_keys WHERE digest = ?", (digest,))
        return _row(rows[0]) if rows else None

    def all(self) -> list[ApiKey]:
        rows, _ = self._run(f"SELECT {COLUMNS} FROM api_keys ORDER BY 5, 1")
        return [_row(r) for r in rows]

    def revoke(self, key_id: str, now: float) -> bool:
        _, changed = self._run(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?", (now, key_id)
        )
        return changed > 0

    def touch(self, key_id: str, now: float) -> None:
        self._run("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))


class PostgresKeyRing(KeyRing):
    def __init__(self, store: PostgresStore) -> None:
        from allowance.stores.postgres_common import Translate, render

        self._store = store
        self._translate = Translate
        # quoted as the decision queries quote it (a schema may have capitals)
        self._table = render("{s}.api_keys", store.schema)
        self._run(
            f"CREATE TABLE IF NOT EXISTS {self._table} (id text PRIMARY KEY,"
            " digest text NOT NULL UNIQUE, scope text NOT NULL, name text NOT NULL,"
            " created_at double precision NOT NULL, last_used_at double precision,"
            " revoked_at double precision)"
        )

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        with self._translate(), self._store._connection() as conn:
            cursor = conn.execute(sql, args)
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount

    def add(self, key: ApiKey) -> None:
        r = key.to_record()
        updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS.split(", ")[1:])
        self._run(
            f"INSERT INTO {self._table} ({COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            f" ON CONFLICT (id) DO UPDATE SET {updates}",
            tuple(r[c] for c in COLUMNS.split(", ")),
        )

    def find(self, digest: str) -> ApiKey | None:
        rows, _ = self._run(f"SELECT {COLUMNS} FROM {self._table} WHERE digest = %s", (digest,))
        return _row(rows[0]) if rows else None

    def all(self) -> list[ApiKey]:
        rows, _ = self._run(f"SELECT {COLUMNS} FROM {self._table} ORDER BY 5, 1")
        return [_row(r) for r in rows]

    def revoke(self, key_id: str, now: float) -> bool:
        _, changed = self._run(
            f"UPDATE {self._table} SET revoked_at = coalesce(revoked_at, %s) WHERE id = %s",
            (now, key_id),
        )
        return changed > 0

    def touch(self, key_id: str, now: float) -> None:
        self._run(f"UPDATE {self._table} SET last_used_at = %s WHERE id = %s", (now, key_id))


class RedisKeyRing(KeyRing):
    """Four hashes under one hash tag (one Cluster slot): the records by id, digest -> id,
    and the two times that change (kept apart so a use can never undo a revocation)."""

    def __init__(self, store: RedisStore) -> None:
        from allowance.stores.redis_common import _translate

        self._client = store.client
        self._translate = _translate
        base = "{" + store.prefix + ":keys}"
        self._records, self._digests = base + ":records", base + ":digests"
        self._used, self._revoked = base + ":used", base + ":revoked"

    def _key(self, raw: bytes | None, used: Any, revoked: Any) -> ApiKey | None:
        if raw is None:
            return None
        record = json.loads(raw)
        record["last_used_at"] = None if used is None else float(used)
        record["revoked_at"] = None if revoked is None else float(revoked)
        return ApiKey.from_record(record)

    def add(self, key: ApiKey) -> None:
        r = key.to_record()
        static = {k: v for k, v in r.items() if k not in ("last_used_at", "revoked_at")}
        with self._translate():
            old = self._client.hget(self._records, key.id)
            pipe = self._client.pipeline(transaction=True)
            if old is not None:
                pipe.hdel(self._digests, json.loads(old)["digest"])
            pipe.hset(self._records, key.id, json.dumps(static))
            pipe.hset(self._digests, key.digest, key.id)
            pipe.hdel(self._used, key.id)
            pipe.hdel(self._revoked, key.id)
            pipe.execute()

    def _fetch(self, key_id: str) -> ApiKey | None:
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._records, key_id)
            pipe.hget(self._used, key_id)
            pipe.hget(self._revoked, key_id)
            raw, used, revoked = pipe.execute()
        return self._key(raw, used, revoked)

    def find(self, digest: str) -> ApiKey | None:
        with self._translate():
            key_id = self._client.hget(self._digests, digest)
        return None if key_id is None else self._fetch(key_id.decode())

    def all(self) -> list[ApiKey]:
        with self._translate():
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self._records)
            pipe.hgetall(self._used)
            pipe.hgetall(self._revoked)
            records, used, revoked = pipe.execute()
        keys = [self._key(raw, used.get(i), revoked.get(i)) for i, raw in records.items()]
        return sorted((k for k in keys if k is not None), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str, now: float) -> bool:
        with self._translate():
            if not self._client.hexists(self._records, key_id):
                return False
            self._client.hsetnx(self._revoked, key_id, repr(now))
            return True

    def touch(self, key_id: str, now: float) -> None:
        with self._translate():
            self._client.hset(self._used, key_id, repr(now))
