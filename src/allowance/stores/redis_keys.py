"""The service's API keys in a Redis store (see ``keyring.py``), through the store's client."""

from __future__ import annotations

import json
from typing import Any

from allowance.keys import ApiKey
from allowance.stores.keyring import KeyRing
from allowance.stores.redis_wire import translating


class RedisKeyRing(KeyRing):
    """Four hashes under one hash tag (one Cluster slot): the records by id, digest -> id,
    and the two times that change (kept apart so a use can never undo a revocation)."""

    def __init__(self, client: Any, prefix: str) -> None:
        """``client``: the store's redis-py client (``RedisStore.client``)."""
        self._client = client
        base = "{" + prefix + ":keys}"
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
        with translating():
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
        with translating():
            pipe = self._client.pipeline(transaction=True)
            pipe.hget(self._records, key_id)
            pipe.hget(self._used, key_id)
            pipe.hget(self._revoked, key_id)
            raw, used, revoked = pipe.execute()
        return self._key(raw, used, revoked)

    def find(self, digest: str) -> ApiKey | None:
        with translating():
            key_id = self._client.hget(self._digests, digest)
        return None if key_id is None else self._fetch(key_id.decode())

    def all(self) -> list[ApiKey]:
        with translating():
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self._records)
            pipe.hgetall(self._used)
            pipe.hgetall(self._revoked)
            records, used, revoked = pipe.execute()
        keys = [self._key(raw, used.get(i), revoked.get(i)) for i, raw in records.items()]
        return sorted((k for k in keys if k is not None), key=lambda k: (k.created_at, k.id))

    def revoke(self, key_id: str, now: float) -> bool:
        with translating():
            if not self._client.hexists(self._records, key_id):
                return False
            self._client.hsetnx(self._revoked, key_id, repr(now))
            return True

    def touch(self, key_id: str, now: float) -> None:
        with translating():
            self._client.hset(self._used, key_id, repr(now))
