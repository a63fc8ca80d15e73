"""The async twin of ``redis.py`` on ``redis.asyncio`` (and its cluster client): the same
scripts, keys, views, deadlines and contention rules, awaited. Records an operation reads come
preloaded with the account (see ``Preload``), so ``ops`` runs between awaits without I/O of its
own.

Connections. Decisions (and account reads and writes) go over ``redis_wire.Lanes``: at most
``max_connections`` (URL option, default ``DEFAULT_LANES``) per server, each used by one
command at a time; a burst beyond that waits for a connection, within the call's deadline,
instead of failing. Sweeps use the client's own pool, a blocking one of the same size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from allowance import adjust, ledger, ops
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.events import KEEP
from allowance.policy import Policy
from allowance.request import Request
from allowance.stores.base import DEFAULT_TIMEOUT, AsyncStore
from allowance.stores.redis_common import KeySpace, read_decision
from allowance.stores.redis_events import DROP, OUTBOX, drop_call, plan_change_template, too_old
from allowance.stores.redis_ledger import TRIM, account_args, trim_args
from allowance.stores.redis_scripts import compiled_decide, lua
from allowance.stores.redis_serial import AsyncSerial
from allowance.stores.redis_transaction import (
    Pause,
    Run,
    prime,
    relay_outbox,
    take_primed,
    transaction,
)
from allowance.stores.redis_url import split_url
from allowance.stores.redis_wire import (
    Deadline,
    Lanes,
    Lua,
    error_reply,
    lane_maker,
    pack,
    reread_slot_map,
    slot_master,
    translating,
    unavailable,
)
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

if TYPE_CHECKING:
    from allowance.stores.redis_sentinel import MasterWatch

T = TypeVar("T")
DEFAULT_LANES = 100  # connections per server (redis-py's async default pool size)
REFRESH_EVERY = 0.25  # seconds: at most one reread of the cluster's slot map this often
REDIRECTED = (MovedError, AskError)


class AsyncRedisStore(KeySpace, AsyncStore):
    fast = True

    def __init__(
        self,
        client: Any,
        prefix: str = "allowance",
        timeout: float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_LANES,
        watch: MasterWatch | None = None,
    ) -> None:
        KeySpace.__init__(self, prefix)
        self._watch = watch  # the sentinels' master (redis+sentinel://)
        self.client = client
        self.cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self.timeout = timeout
        self.policy: Policy | None = None
        self._scripts = (lua("load"), lua("apply"))
        self._account = lua("account")
        self._size = max_connections
        self._lanes: dict[str | None, Lanes] = {}  # server (None: the only one) -> Lanes
        self._serial = AsyncSerial()
        self._cluster_ready = False
        self._stale_map = 0.0  # monotonic time the slot map was found stale, 0: it is not

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> AsyncRedisStore:
        """As ``RedisStore.from_url``: nothing is sent twice (see ``redis_wire.no_retry``)."""
        parts = split_url(url, timeout)
        size = parts.max_connections or DEFAULT_LANES
        options: dict[str, Any] = {
            "retry": Retry(NoBackoff(), 0),
            "socket_timeout": parts.timeout,
            "socket_connect_timeout": parts.timeout,
        }
        watch = None
        try:
            if parts.kind == "cluster":
                client: Any = redis.asyncio.cluster.RedisCluster.from_url(parts.rest, **options)
            elif parts.kind == "sentinel":
                from allowance.stores.redis_sentinel import async_sentinel_client

                client, watch = async_sentinel_client(parts.rest, options)
            else:
                pool = redis.asyncio.BlockingConnectionPool.from_url(
                    parts.rest, max_connections=size, timeout=parts.timeout, **options
                )
                client = redis.asyncio.Redis.from_pool(pool)
        except (RedisError, RedisClusterException) as exc:
            raise unavailable(exc, applied=False) from exc
        except ValueError as exc:
            raise ConfigurationError(f"store: {exc} in {url!r}") from None
        return cls(client, parts.prefix, parts.timeout, size, watch)

    async def put_account(
        self, account_id: str, plan: str, seats: int, now: float | None = None
    ) -> bool:
        event = plan_change_template(self.policy, account_id, plan, seats, now)
        keys, args = self.account_keys(account_id), [plan, seats, account_id, event]
        args += account_args(self.policy, account_id, plan, seats, now)
        deadline = Deadline(self.timeout)
        reply = await self._run(self._account, keys, args, deadline)
        if (index := self.index_after(account_id)) is not None:
            await self._command(deadline, *index)
        await self._drive(relay_outbox(self, account_id, reply), deadline)
        return bool(reply == 1)

    async def get_setting(self, name: str) -> str | None:
        found = await self._command(Deadline(self.timeout), "HGET", self.settings_key, name)
        return None if found is None else bytes(found).decode()

    async def get_account(self, account_id: str) -> Account | None:
        key = self.key(account_id, "a")
        plan, seats, terms = await self._command(
            Deadline(self.timeout), "HMGET", key, "p", "s", "t"
        )
        if plan is None:
            return None
        return adjust.account(account_id, plan.decode(), int(seats), terms and terms.decode())

    async def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        compiled = compiled_decide(policy)
        args = self.decide_args(policy, req, now, charge)
        if args is None:
            return None
        keys, argv = args
        deadline = Deadline(self.timeout)
        if self._serial.busy(req.account):  # a slow path is writing it: after that one
            async with self._serial.hold(req.account, deadline):
                reply = await self._run(compiled, keys, argv, deadline)
        else:
            reply = await self._run(compiled, keys, argv, deadline)
        prime(req.account, keys, reply)
        return read_decision(policy, req, reply)

    async def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        primed = take_primed()  # first: it is this call's or no one's
        policy = self.policy
        assert policy is not None
        deadline = Deadline(self.timeout)
        protocol = transaction(
            self, self._scripts, policy, account_id, now, fn, preload, deadline, self.timeout,
            None, primed,
        )  # fmt: skip
        async with self._serial.hold(account_id, deadline):
            return await self._drive(protocol, deadline)

    async def _drive(self, protocol: Generator[Run | Pause, Any, T], deadline: Deadline) -> T:
        """As ``RedisStore._drive``, awaited."""
        reply: Any = None
        while True:
            try:
                step = protocol.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Pause):
                await asyncio.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = await self._run(step.script, step.keys, step.argv, deadline)
            except StoreError:
                if not step.after_write:
                    raise
                reply = None

    async def _run(self, script: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        """EVALSHA of ``script`` on the server of ``keys`` (one slot)."""
        return await self._on_lanes(
            keys[0],
            lambda lanes: lanes.script(script, keys, argv, deadline),
            lambda client: _evalsha(client, script, keys, argv),
            deadline,
        )

    async def _command(self, deadline: Deadline, *args: Any) -> Any:
        """A command whose first argument after its name is a key of the account."""
        packed = pack(*args)
        return await self._on_lanes(
            args[1],
            lambda lanes: lanes.call(packed, deadline),
            lambda client: client.execute_command(*args),
            deadline,
        )

    async def _on_lanes(
        self,
        key: str,
        send: Callable[[Lanes], Awaitable[Any]],
        redirected: Callable[[Any], Awaitable[Any]],
        deadline: Deadline,
    ) -> Any:
        if not self.cluster:
            lanes = self._lanes.get(None)
            if lanes is None:
                pool = self.client.connection_pool
                if self._watch is None:
                    make = lane_maker(pool.connection_class, pool.connection_kwargs)
                    lanes = self._lanes[None] = Lanes(make, self._size)
                else:
                    from allowance.stores import redis_sentinel

                    make = redis_sentinel.lane_maker(self._watch, pool)
                    lanes = self._lanes[None] = Lanes(make, self._size, self._watch.current)
            try:
                return await send(lanes)
            except ResponseError as exc:
                raise error_reply(exc) from exc
        return await self._on_node(key, send, redirected, deadline)

    async def _on_node(
        self,
        key: str,
        send: Callable[[Lanes], Awaitable[Any]],
        redirected: Callable[[Any], Awaitable[Any]],
        deadline: Deadline,
    ) -> Any:
        """As ``redis_routes.Routes._on_cluster_link``: the slot's master over its Lanes; MOVED or
        ASK through RedisCluster; a failure marks the slot map for a reread."""
        try:
            async with asyncio.timeout(deadline.left()):
                if not self._cluster_ready:
                    await self.client.initialize()
                    self._cluster_ready = True
                elif self._stale_map and time.monotonic() - self._stale_map >= REFRESH_EVERY:
                    self._stale_map = 0.0
                    with suppress(RedisError, RedisClusterException):
                        await reread_slot_map(self.client)
            node = slot_master(self.client, key)
        except (RedisError, RedisClusterException, TimeoutError) as exc:
            self._stale_map = self._stale_map or time.monotonic()
            raise unavailable(exc, applied=False) from exc
        lanes = self._lanes.get(node.name)
        if lanes is None:
            make = lane_maker(node.connection_class, node.connection_kwargs)
            lanes = self._lanes[node.name] = Lanes(make, self._size)
        try:
            return await send(lanes)
        except REDIRECTED:
            pass
        except ResponseError as exc:
            raise error_reply(exc) from exc
        except StoreError:
            self._stale_map = self._stale_map or time.monotonic()
            raise
        try:
            async with asyncio.timeout(deadline.left()):
                return await redirected(self.client)
        except (RedisError, RedisClusterException, TimeoutError) as exc:
            raise unavailable(exc, applied=True) from exc

    async def sweep(self, now: float | None = None) -> int:
        """Settle expired reservations nobody touched (everything else expires by TTL)."""
        policy = self.policy
        if policy is None:
            return 0
        settled = 0
        with translating():
            if now is None:
                seconds, micros = await self.client.time()
                now = float(seconds) + float(micros) / 1_000_000
            await self._drop_events(now - KEEP)
            old_rows = now - ledger.retention(policy)
            async for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                due, account, outbox = await self.client.hmget(key, ["nh", "id", "ob"])
                if account is not None and outbox is not None:  # left by a process stopped
                    await self._relay_left(account.decode())
                if account is not None:  # the rows of an account no longer charged, too
                    key = self.ledger_key(account.decode())
                    await self._run(TRIM, [key], trim_args(old_rows), Deadline(self.timeout))
                if due is None or account is None or float(due) > now:
                    continue
                try:
                    await self.transact(
                        account.decode(),
                        now,
                        lambda view, t: ops.settle_due_holds(policy, view, t),
                    )
                except UnknownAccount:  # gone since the scan (or a stray key): the others stay
                    continue
                settled += 1
        return settled

    async def _relay_left(self, account: str) -> None:
        deadline = Deadline(self.timeout)
        entries = await self._run(OUTBOX, self.outbox_keys(account), ["read"], deadline)
        await self._drive(relay_outbox(self, account, [1, *entries]), deadline)

    async def _drop_events(self, cutoff: float) -> None:
        """As ``RedisStore._drop_events``."""
        log = self.event_log
        while old := too_old(await self.client.xrange(log.log, count=500), cutoff):
            keys, ids = drop_call(log, old)
            await self._run(DROP, keys, ids, Deadline(self.timeout))

    async def close(self) -> None:
        lanes, self._lanes = self._lanes, {}
        for each in lanes.values():
            await each.close()
        if self._watch is not None:
            from allowance.stores.redis_sentinel import sentinel_clients

            self._watch.close()
            for client in sentinel_clients(self.client):
                await client.aclose()
        await self.client.aclose()


async def _evalsha(client: Any, script: Lua, keys: list[str], argv: list[Any]) -> Any:
    """EVALSHA through a redis-py client, loading the script on NOSCRIPT."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *argv)
    except NoScriptError:
        await client.script_load(script.text)
        return await client.evalsha(script.sha, len(keys), *keys, *argv)
