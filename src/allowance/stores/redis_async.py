"""The async twin of ``redis.py`` on ``redis.asyncio`` (and its cluster client): the same
scripts, keys and views, awaited. Records an operation reads come preloaded with the account
(see ``Preload``), so ``ops`` runs between awaits without I/O of its own."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import hiredis
import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from allowance import ops
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.ops import Request
from allowance.policy import Policy
from allowance.stores import redis_common
from allowance.stores.base import NO_PRELOAD, AccountView, AsyncStore, Preload
from allowance.stores.redis_common import (
    MAX_ATTEMPTS,
    KeySpace,
    _num,
    _translate,
    compiled_decide,
    read_decision,
    script,
    sha1_hex,
    split_url,
)
from allowance.types import Account, Decision

T = TypeVar("T")
MAX_IDLE = 16  # connections Lanes keeps between decisions


class AsyncRedisStore(KeySpace, AsyncStore):
    fast = True

    def __init__(self, client: Any, prefix: str = "allowance") -> None:
        KeySpace.__init__(self, prefix)
        self.client = client
        self.policy: Policy | None = None
        self._load = client.register_script(script("load"))
        self._apply = client.register_script(script("apply"))
        self._account = client.register_script(script("account"))
        self._decide_by_policy: dict[int, tuple[str, str]] = {}  # policy -> (sha, text)
        cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._lanes = None if cluster else Lanes(client.connection_pool)

    @classmethod
    def from_url(cls, url: str) -> AsyncRedisStore:
        """As ``RedisStore.from_url``: nothing is sent twice (see ``redis.no_retry``)."""
        rest, prefix, cluster = split_url(url)
        try:
            once = Retry(NoBackoff(), 0)
            if cluster:
                client: Any = redis.asyncio.cluster.RedisCluster.from_url(rest, retry=once)
            else:
                client = redis.asyncio.Redis.from_url(rest, retry=once)
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis: cannot connect: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"store: {exc} in {url!r}") from None
        return cls(client, prefix)

    async def put_account(self, account_id: str, plan: str, seats: int) -> bool:
        with _translate():
            created = await self._account(
                keys=[self.key(account_id, "a")], args=[plan, seats, account_id]
            )
        return bool(created)

    async def get_account(self, account_id: str) -> Account | None:
        with _translate():
            plan, seats = await self.client.hmget(self.key(account_id, "a"), ["p", "s"])
        if plan is None:
            return None
        return Account(account_id, plan.decode(), int(seats))

    async def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        compiled = self._decide_by_policy.get(id(policy))
        if compiled is None:
            text = compiled_decide(policy)
            compiled = self._decide_by_policy[id(policy)] = (sha1_hex(text), text)
        keys, argv = self.decide_args(policy, req, now, charge)
        try:
            if self._lanes is None:
                reply = await self.client.evalsha(compiled[0], 2, *keys, *argv)
            else:
                reply = await self._lanes.call("EVALSHA", compiled[0], 2, *keys, *argv)
        except NoScriptError:
            with _translate():
                await self.client.script_load(compiled[1])
                reply = await self.client.evalsha(compiled[0], 2, *keys, *argv)
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis: {exc}") from exc
        return read_decision(policy, req, reply)

    async def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        policy = self.policy
        assert policy is not None
        keys = self.load_keys(account_id, preload)
        with _translate():
            for _ in range(MAX_ATTEMPTS):
                loaded = await self._load(keys=keys, args=["" if now is None else _num(now)])
                view = self.view(account_id, keys, loaded, None)
                at = float(loaded[0])
                result = fn(view, at)
                apply = view.apply_args(policy, at)
                if apply is None or await self._apply(keys=apply[0], args=apply[1]) == 1:
                    return result
        raise StoreError(f"redis: account {account_id!r} kept changing; gave up after retries")

    async def sweep(self, now: float | None = None) -> int:
        """Settle expired reservations nobody touched (everything else expires by TTL)."""
        policy = self.policy
        if policy is None:
            return 0
        settled = 0
        with _translate():
            if now is None:
                seconds, micros = await self.client.time()
                now = float(seconds) + float(micros) / 1_000_000
            async for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                due, account = await self.client.hmget(key, ["nh", "id"])
                if due is None or account is None:
                    continue
                if float(due) > now:
                    continue
                try:
                    await self.transact(
                        account.decode(),
                        now,
                        lambda view, t: ops.settle_due_holds(policy, view, t),
                    )
                except UnknownAccount:
                    continue
                settled += 1
        return settled

    async def close(self) -> None:
        if self._lanes is not None:
            await self._lanes.close()
        await self.client.aclose()


class Lanes:
    """Connections held by the store for the one-round-trip decision, one request at a time
    each. The client's ``execute_command`` (pool checkout, retry and telemetry wrappers)
    costs about as much CPU as the decision's own Python; this is a send and a read.

    A connection that fails midway is dropped and the error raised (the service answers 503):
    a reply lost after Redis ran the script may have charged, so nothing here sends again.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._free: list[tuple[Any, float]] = []  # (connection, when last used)

    async def call(self, *args: Any) -> Any:
        conn = await self._take()
        try:
            # hiredis packs in C: a seventh of redis-py's packer, a few µs a decision
            await conn.send_packed_command(hiredis.pack_command(args), check_health=False)
            reply = await conn.read_response()
        except ResponseError:
            await self._put(conn)  # a whole error reply (NOSCRIPT, a script's error)
            raise
        except BaseException:  # lost, timed out or cancelled midway: never reuse it
            await self._drop(conn)
            raise
        await self._put(conn)
        return reply

    async def _take(self) -> Any:
        """A held connection, or one from the pool. One idle for a while is checked first, as
        the pool checks one it hands out (readable: closed by the server meanwhile, e.g. a
        restart, or stray data), and connected again if need be. (The pool's own
        ``ensure_connection`` skips that check when maintenance notifications are on.)"""
        if not self._free:
            return await self._pool.get_connection()
        conn, used = self._free.pop()
        if time.monotonic() - used >= redis_common.IDLE_CHECK:
            try:
                try:
                    stale = await conn.can_read()
                except (RedisError, OSError):
                    stale = True
                if stale:
                    await conn.disconnect()
                    await conn.connect()
            except BaseException:
                await self._drop(conn)
                raise
        return conn

    async def _put(self, conn: Any) -> None:
        if len(self._free) < MAX_IDLE:
            self._free.append((conn, time.monotonic()))
        else:  # after a burst: back to the pool, not held for good
            await self._pool.release(conn)

    async def _drop(self, conn: Any) -> None:
        await conn.disconnect()
        await self._pool.release(conn)

    async def close(self) -> None:
        free, self._free = self._free, []
        for conn, _ in free:
            await self._pool.release(conn)
