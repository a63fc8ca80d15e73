"""``redis://host:port/db`` and ``redis+cluster://host:port``: many app servers, one truth.

Why two paths. A plain ``consume`` or ``check`` is one ``EVALSHA`` of ``lua/decide.lua``, with
the policy compiled into the script: it reads the account and its counters, applies the grant
arithmetic (the all-or-nothing or partial check over every limit of the feature, the same IEEE
operations as ``windows.py``), charges, and returns the counters as they were before. On a
grant it also returns ``remaining`` and the fair-use flag, so the decision is built at once
(its sentence is written by the engine only if read); on a denial Python replays
``engine.decide`` on the returned counters at the script's time for the blocking limit,
``resets_at`` and upgrade, and must agree on the grant. So the arithmetic that needs atomicity
exists twice (Lua and ``windows.py``), held equal by the shared conformance and hypothesis
suites, and everything else stays in the engine. Idempotent requests, reservations, usage and
expired holds take the slow path: ``lua/load.lua`` reads the state (and the records the
operation will read), ``ops.py`` runs exactly as for the other stores, and ``lua/apply.lua``
writes the result only if the account's version is unchanged (every write bumps it), else
Python retries on fresh state. Two round trips, rare.

Keys. All keys of an account share one hash tag, ``{account}``, so every script touches one
Redis Cluster slot. ``P:{a}:a`` is the account hash (plan, seats, version, held reservations),
``P:{a}:c`` its counters (expires when the last window closes), ``P:{a}:i:KEY`` an idempotency
record (24 h), ``P:{a}:r:ID`` a reservation record (until 24 h after its expiry). ``P`` is the
``prefix`` URL option (default ``allowance``). Times are epoch seconds written with 17
significant digits, so they survive Lua and back exactly.

Time is Redis ``TIME`` inside the scripts, unless the Limiter has a clock.

Failures. A command is sent once: a timeout or a connection lost after sending is a
``StoreError``, since the script may have run (redis-py's retries are turned off, RedisCluster's
too, which would send it again). Only a cluster reply saying the script did not run is followed
(``_cluster_evalsha``). Decisions go over connections each thread holds; one idle for a second
is checked before use, so a connection the server closed meanwhile is replaced, not failed on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, TypeVar

import hiredis
import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

from allowance import ops
from allowance.errors import ConfigurationError, StoreError
from allowance.ops import Request
from allowance.policy import Policy
from allowance.stores import redis_common
from allowance.stores.base import NO_PRELOAD, AccountView, AsyncStore, Preload, Store
from allowance.stores.keyring import KeyRing
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
# replies that say the script did not run on that node: safe to send again elsewhere
NOT_RUN = (MovedError, AskError, TryAgainError, ClusterDownError)


def no_retry() -> Retry:
    """redis-py retries a command after a timeout or a lost connection by sending it again,
    which for a script that charges is a second charge. Nothing is resent: the error is a
    StoreError (the caller knows whether its request may be retried: an idempotency key)."""
    return Retry(NoBackoff(), 0)


class RedisStore(KeySpace, Store):
    scheme = "redis"
    fast = True

    def __init__(self, client: Any, prefix: str = "allowance", url: str | None = None) -> None:
        KeySpace.__init__(self, prefix)
        self.client = client
        self.cluster = isinstance(client, redis.cluster.RedisCluster)
        self.url = url
        self._load = client.register_script(script("load"))
        self._apply = client.register_script(script("apply"))
        self._account = client.register_script(script("account"))
        self._decide_by_policy: dict[int, tuple[str, str]] = {}  # policy -> (sha, text)
        self._held = threading.local()

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> RedisStore:
        rest, prefix, cluster = split_url(url)
        try:
            if cluster:
                client: Any = redis.cluster.RedisCluster.from_url(rest, retry=no_retry())
            else:
                client = redis.Redis.from_url(rest, retry=no_retry())
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis: cannot connect: {exc}") from exc
        except ValueError as exc:
            raise ConfigurationError(f"store: {exc} in {url!r}") from None
        return cls(client, prefix, url)

    def async_store(self) -> AsyncStore | None:
        if self.url is None:
            return None
        from allowance.stores.redis_async import AsyncRedisStore

        store = AsyncRedisStore.from_url(self.url)
        store.policy = self.policy
        return store

    def get(self, key: str) -> bytes | None:
        with _translate():
            value: bytes | None = self.client.get(key)
        return value

    def now(self) -> float:
        with _translate():
            seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    def put_account(self, account_id: str, plan: str, seats: int) -> bool:
        with _translate():
            created = self._account(
                keys=[self.key(account_id, "a")], args=[plan, seats, account_id]
            )
        return bool(created)

    def get_account(self, account_id: str) -> Account | None:
        with _translate():
            plan, seats = self.client.hmget(self.key(account_id, "a"), ["p", "s"])
        if plan is None:
            return None
        return Account(account_id, plan.decode(), int(seats))

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """One round trip; None when the slow path must decide (reservations due, ...)."""
        compiled = self._decide_by_policy.get(id(policy))
        if compiled is None:
            text = compiled_decide(policy)
            compiled = self._decide_by_policy[id(policy)] = (sha1_hex(text), text)
        keys, argv = self.decide_args(policy, req, now, charge)
        try:
            if self.cluster:
                reply = self._cluster_evalsha(compiled, keys, argv)
            else:
                reply = _evalsha_held(self._thread_client(), compiled, keys, argv)
        except (RedisError, RedisClusterException) as exc:
            raise StoreError(f"redis: {exc}") from exc
        return read_decision(policy, req, reply)

    def _thread_client(self) -> Any:
        """A client holding one pooled connection for this thread: taking a connection from
        the pool and giving it back on every command costs more than a decision's own Python.
        The connection goes back to the pool when the thread's client is collected; after a
        fork the child takes its own."""
        held = getattr(self._held, "client", None)
        if held is None or self._held.pid != os.getpid():
            held = redis.Redis(
                connection_pool=self.client.connection_pool, single_connection_client=True
            )
            self._held.client, self._held.pid = held, os.getpid()
        self._check_if_idle(held)
        return held

    def _check_if_idle(self, client: Any) -> None:
        """A held connection idle for a while is checked the way the pool checks one it hands
        out (readable means closed by the server, or stray data): dropped, so the command goes
        out on a new one. Under load the check is skipped; a connection that dies then fails
        its decision (StoreError) rather than sending it twice."""
        now = time.monotonic()
        used: dict[int, float] | None = getattr(self._held, "used", None)  # client -> last use
        if used is None:
            used = self._held.used = {}
        last = used.get(id(client), 0.0)
        used[id(client)] = now
        conn = client.connection
        if now - last < redis_common.IDLE_CHECK or conn is None:
            return
        try:
            stale = conn._sock is not None and conn.can_read(timeout=0)
        except (RedisError, OSError):
            stale = True
        if stale:
            conn.disconnect()

    def _cluster_evalsha(self, compiled: tuple[str, str], keys: list[str], argv: list[Any]) -> Any:
        """EVALSHA on the master that serves the account's slot, over a connection this thread
        holds to that master (as ``_thread_client``; RedisCluster's own routing, per-node pool
        and bookkeeping on every call cost more than the decision's Python). The slot map is
        RedisCluster's. A reply saying the script did not run there (MOVED or ASK after a
        resharding, TRYAGAIN, CLUSTERDOWN) drops the held connection and sends the command
        again through RedisCluster, which follows the redirection and refreshes its slot map;
        the next call then finds the new owner. Any other error (a timeout, a connection lost
        midway, a node that is down) may come after the script charged, so nothing is sent
        again: StoreError, and the slot map is reread for the next decision.
        Nodes the slot map learnt from a redirection get their pool from RedisCluster too."""
        held: dict[str, Any] | None = getattr(self._held, "nodes", None)
        if held is None or self._held.pid != os.getpid():
            held = self._held.nodes = {}
            self._held.pid = os.getpid()
        name = None
        try:
            node = self.client.nodes_manager.get_node_from_slot(key_slot(keys[0].encode()))
            name = node.name
            client = held.get(name)
            if client is None:
                pool = self.client.get_redis_connection(node).connection_pool
                client = held[name] = redis.Redis(
                    connection_pool=pool, single_connection_client=True
                )
            self._check_if_idle(client)
            return _evalsha_held(client, compiled, keys, argv)
        except (RedisError, RedisClusterException) as exc:
            dropped = held.pop(name, None) if name is not None else None
            if dropped is not None:
                with suppress(RedisError, RedisClusterException):
                    dropped.close()
            if not isinstance(exc, NOT_RUN):
                # lost midway (timeout, dropped connection): the script may have charged,
                # so it is not sent again; the slot map is reread for the next decision
                with suppress(RedisError, RedisClusterException):
                    self.client.nodes_manager.initialize()
                raise StoreError(f"redis: {exc}") from exc
        return _evalsha(self.client, compiled, keys, argv)  # RedisCluster follows it

    def transact(
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
                loaded = self._load(keys=keys, args=["" if now is None else _num(now)])
                view = self.view(account_id, keys, loaded, self.get)
                at = float(loaded[0])
                result = fn(view, at)
                apply = view.apply_args(policy, at)
                if apply is None or self._apply(keys=apply[0], args=apply[1]) == 1:
                    return result
        raise StoreError(f"redis: account {account_id!r} kept changing; gave up after retries")

    def sweep(self, now: float | None = None) -> int:
        """Settle expired reservations nobody touched (everything else expires by TTL)."""
        policy = self.policy
        if policy is None:
            return 0
        settled = 0
        with _translate():
            for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                raw = self.client.hget(key, "nh")
                if raw is None:
                    continue
                at = self.now() if now is None else now
                if float(raw) > at:
                    continue
                account = self.client.hget(key, "id")
                if account is None:
                    continue
                self.transact(
                    account.decode(), now, lambda view, t: ops.settle_due_holds(policy, view, t)
                )
                settled += 1
        return settled

    def _make_keyring(self) -> KeyRing:
        from allowance.stores.keyring import RedisKeyRing

        return RedisKeyRing(self)

    def close(self) -> None:
        held = getattr(self._held, "client", None)
        if held is not None:
            held.close()
        for client in getattr(self._held, "nodes", {}).values():
            client.close()
        self.client.close()


def _evalsha(client: Any, compiled: tuple[str, str], keys: list[str], argv: list[Any]) -> Any:
    """EVALSHA through the client (redis-py's Script wrapper costs more than the decision's
    Python), loading the script on NOSCRIPT."""
    try:
        return client.evalsha(compiled[0], 2, *keys, *argv)
    except NoScriptError:
        client.script_load(compiled[1])
        return client.evalsha(compiled[0], 2, *keys, *argv)


def _evalsha_held(client: Any, compiled: tuple[str, str], keys: list[str], argv: list[Any]) -> Any:
    """EVALSHA on a connection the thread holds, packed by hiredis and read back directly:
    redis-py's ``execute_command`` (its lock, retry and telemetry wrappers) costs about 40 us
    of Python a call here, as much as the rest of the decision. Loads the script on NOSCRIPT.
    Any failure but an error reply drops the connection (a reply may be on its way); the next
    call opens a new one."""
    conn = client.connection
    if conn is None:  # closed
        return _evalsha(client, compiled, keys, argv)
    evalsha = [hiredis.pack_command(("EVALSHA", compiled[0], 2, *keys, *argv))]
    try:
        try:
            conn.send_packed_command(evalsha, check_health=False)
            return conn.read_response()
        except NoScriptError:
            load: tuple[Any, ...] = ("SCRIPT", "LOAD", compiled[1])
            conn.send_packed_command([hiredis.pack_command(load)])
            conn.read_response()
            conn.send_packed_command(evalsha, check_health=False)
            return conn.read_response()
    except ResponseError:
        raise
    except BaseException:
        conn.disconnect()
        raise
