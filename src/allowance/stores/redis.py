"""``redis://host:port/db``, ``redis+cluster://host:port`` and
``redis+sentinel://host:port,.../SERVICE/db`` (see ``redis_sentinel.py``): many app servers,
one truth.

Why two paths. A plain ``consume`` or ``check`` is one ``EVALSHA`` of ``lua/decide.lua``, with
the rules compiled by ``rules.py`` written into the script as data: it reads the account and
its counters (and the user's records a per-user limit counts in, ``owners.py``), applies the
grant arithmetic (the all-or-nothing or partial check over every limit of the feature, the same
IEEE operations as ``windows.py``), charges, and returns the counters as they were before. On a
grant it also returns ``remaining`` and the fair-use flag, so the decision is built at once
(its sentence is written by the engine only if read); on a denial Python replays
``engine.decide`` on the returned counters at the script's time for the blocking limit,
``resets_at`` and upgrade, and must agree on the grant. So the arithmetic that needs atomicity
exists twice (Lua and ``windows.py``), held equal by the kernel parity test and the shared
conformance and hypothesis suites, and everything else stays in the engine. Idempotent
requests, reservations, usage and expired holds take the slow path: ``lua/load.lua`` reads the
state (and the records the operation will read), ``ops.py`` runs exactly as for the other
stores, and ``lua/apply.lua`` writes the result only if the account's version is unchanged
(every write bumps it), else Python retries on fresh state. Two round trips, rare.

Keys. All keys of an account share one hash tag, ``{account}``, so every script touches one
Redis Cluster slot. ``P:{a}:a`` is the account hash (plan, seats, version, held reservations),
``P:{a}:c`` its counters (expires when the last window closes), ``P:{a}:i:KEY`` an idempotency
record (24 h), ``P:{a}:r:ID`` a reservation record (until 24 h after its expiry), ``P:{a}:m``
the account's event marks and ``P:{a}:e`` its events outbox, relayed to the log under
``{P:events}`` (``redis_events.py``). ``P`` is the
``prefix`` URL option (default ``allowance``). Times are epoch seconds written with 17
significant digits, so they survive Lua and back exactly.

Time is Redis ``TIME`` inside the scripts, unless the Limiter has a clock.

Time limits. Every decision, one round trip or a whole slow path with its retries, is bounded
by ``timeout`` (``?timeout=`` or ``Limiter(timeout=)``, default ``DEFAULT_TIMEOUT``): each
round trip gets the time left, then ``StoreUnavailable``. Other calls (accounts, usage, keys,
sweep) are bounded per command by the same socket timeouts.

Failures. A command is sent once: a timeout or a connection lost after sending is
``StoreUnavailable(maybe_applied=True)``, since the script may have run (redis-py's retries
are turned off, RedisCluster's too, which would send it again); one that certainly never
reached the server (connection refused, no connection within the timeout, a write that
failed, a replica or a loading server refusing it) has ``maybe_applied=False``. Only a cluster
reply saying the script did not run there (MOVED, ASK) is followed. Decisions go over
connections each thread holds (``redis_wire.Link``); each is checked before every write, so a
connection the server closed (a restart) is replaced, not failed on.

Contention. The slow path's optimistic write loses when the account changed since it was
read. Slow-path calls on one account are serialised within the process (``Serial``), and a
one-step decision arriving while one is in flight waits for it, so the writers of one process
do not collide (measured: 64 threads, 1,280 mixed calls on one account, no retry). Writers
in other processes still can, and so can one-step decisions already on their way. A loser
retries after a random pause that grows with each loss (``retry_pause``), until the call's
deadline, then ``StoreUnavailable(maybe_applied=False)``; so the bound left is time, not a
count: a call fails only if the account is written by others between its read and its write
on every try for the whole timeout (4 Limiters x 16 threads on one account: ~0.3 retries a
call, slowest call 0.14 s of the 0.5 s).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.cluster
from redis.exceptions import RedisClusterException, RedisError

from allowance import adjust, ledger, ops
from allowance.errors import ConfigurationError, StoreError, UnknownAccount
from allowance.events import KEEP, Event
from allowance.ledger import Row
from allowance.policy import Policy
from allowance.request import Request
from allowance.stores import redis_config
from allowance.stores.base import DEFAULT_TIMEOUT, AsyncStore, Store
from allowance.stores.keyring import KeyRing
from allowance.stores.redis_common import KeySpace, read_decision
from allowance.stores.redis_events import (
    DROP,
    OUTBOX,
    PAGE_EVENTS,
    drop_call,
    plan_change_template,
    range_args,
    read,
    too_old,
)
from allowance.stores.redis_keys import RedisKeyRing
from allowance.stores.redis_ledger import PAGE, TRIM, account_args, read_page, trim_args
from allowance.stores.redis_routes import Routes
from allowance.stores.redis_scripts import compiled_decide, lua
from allowance.stores.redis_serial import Serial
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
    Link,
    Lua,
    no_retry,
    translating,
    unavailable,
)
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

if TYPE_CHECKING:
    from allowance.stores.redis_sentinel import MasterWatch

T = TypeVar("T")
log = logging.getLogger("allowance.store")
SETTING = lua("setting")  # Store.swap_setting


class RedisStore(KeySpace, Store):
    scheme = "redis"
    fast = True

    def __init__(
        self,
        client: Any,
        prefix: str = "allowance",
        url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        watch: MasterWatch | None = None,
    ) -> None:
        KeySpace.__init__(self, prefix)
        self._watch = watch  # the sentinels' master (redis+sentinel://)
        self.client = client
        self._routes = Routes(client, watch)
        self._links = self._routes.links
        self.cluster = self._routes.cluster
        self.url = url
        self.timeout = timeout
        self._scripts = (lua("load"), lua("apply"))
        self._account = lua("account")
        self._serial = Serial()

    @classmethod
    def from_url(cls, url: str, *, timeout: float | None = None) -> RedisStore:
        parts = split_url(url, timeout)
        seconds = parts.timeout
        options: dict[str, Any] = {
            "retry": no_retry(),
            "socket_timeout": seconds,
            "socket_connect_timeout": seconds,
        }
        watch = None
        try:
            if parts.kind == "cluster":
                client: Any = redis.cluster.RedisCluster.from_url(parts.rest, **options)
            elif parts.kind == "sentinel":
                from allowance.stores.redis_sentinel import sentinel_client

                client, watch = sentinel_client(parts.rest, options)
            else:
                client = redis.Redis.from_url(parts.rest, **options)
        except (RedisError, RedisClusterException) as exc:
            raise unavailable(exc, applied=False) from exc
        except ValueError as exc:
            raise ConfigurationError(f"store: {exc} in {url!r}") from None
        store = cls(client, parts.prefix, url, seconds, watch)
        redis_config.warn_once(url, client, cluster=store.cluster)
        return store

    def async_store(self) -> AsyncStore | None:
        if self.url is None:
            return None
        from allowance.stores.redis_async import AsyncRedisStore

        store = AsyncRedisStore.from_url(self.url, timeout=self.timeout)
        store.policy = self.policy
        return store

    def get(self, key: str) -> bytes | None:
        with translating():
            value: bytes | None = self.client.get(key)
        return value

    def now(self) -> float:
        with translating():
            seconds, micros = self.client.time()
        return float(seconds) + float(micros) / 1_000_000

    def put_account(self, account_id: str, plan: str, seats: int, now: float | None = None) -> bool:
        keys = self.account_keys(account_id)
        deadline = self._deadline()
        event = plan_change_template(self.policy, account_id, plan, seats, now)
        args = [
            plan,
            seats,
            account_id,
            event,
            *account_args(self.policy, account_id, plan, seats, now),
        ]
        reply = self._run(self._account, keys, args, deadline)
        if (index := self.index_after(account_id)) is not None:
            with translating():
                self.client.execute_command(*index)
        self._drive(relay_outbox(self, account_id, reply), deadline)
        return bool(reply == 1)

    def events(self, after: int, limit: int, account: str | None) -> list[Event]:
        if account is None:
            return read(self._command(self._deadline(), *range_args(self.event_log, after, limit)))
        keys, argv = self.event_log.page_call(account, after, limit)
        return read(self._run(PAGE_EVENTS, keys, argv, self._deadline()))

    def newest_event_id(self) -> int:
        # the counter relay.lua takes ids from, in the script that logs them: never behind
        found = self._command(self._deadline(), "GET", self.event_log.last_id)
        return 0 if found is None else int(found)

    def ledger(
        self,
        account: str,
        after: str | None,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Row]:
        deadline, key = self._deadline(), self.ledger_key(account)

        def page(cursor: str, since_ms: str, count: int) -> list[Any]:
            found: list[Any] = self._run(PAGE, [key], [cursor, since_ms, count], deadline)
            return found

        return read_page(page, account, after, limit, since, until)

    def get_account(self, account_id: str) -> Account | None:
        plan, seats, terms = self._command(
            self._deadline(), "HMGET", self.key(account_id, "a"), "p", "s", "t"
        )
        if plan is None:
            return None
        return adjust.account(account_id, plan.decode(), int(seats), terms and terms.decode())

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """One round trip; None when the slow path must decide (reservations due, ...)."""
        compiled = compiled_decide(policy)
        args = self.decide_args(policy, req, now, charge)
        if args is None:
            return None
        keys, argv = args
        deadline = Deadline(self.timeout)
        if self._serial.busy(req.account):  # a slow path is writing it: after that one
            with self._serial.hold(req.account, deadline):
                reply = self._run(compiled, keys, argv, deadline)
        else:
            reply = self._run(compiled, keys, argv, deadline)
        prime(req.account, keys, reply)
        return read_decision(policy, req, reply)

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        """Load, run ``fn``, write if the account's version is unchanged; else again, after
        a pause (see "Contention" above), within one deadline (``redis_transaction``)."""
        primed = take_primed()  # first: it is this call's or no one's
        policy = self.policy
        assert policy is not None
        deadline = Deadline(self.timeout)

        def fetch(key: str) -> bytes | None:
            value: bytes | None = self._command(deadline, "GET", key)
            return value

        protocol = transaction(
            self, self._scripts, policy, account_id, now, fn, preload, deadline, self.timeout,
            fetch, primed,
        )  # fmt: skip
        with self._serial.hold(account_id, deadline):
            return self._drive(protocol, deadline)

    def _drive(self, protocol: Generator[Run | Pause, Any, T], deadline: Deadline) -> T:
        """Run a protocol's steps (``redis_transaction``) to its result."""
        reply: Any = None
        while True:
            try:
                step = protocol.send(reply)
            except StopIteration as done:
                result: T = done.value
                return result
            if isinstance(step, Pause):
                time.sleep(step.seconds)
                reply = None
                continue
            try:
                reply = self._run(step.script, step.keys, step.argv, deadline)
            except StoreError:
                if not step.after_write:
                    raise
                reply = None

    def _deadline(self) -> Deadline:
        return Deadline(self.timeout)

    def _links_here(self) -> dict[str | None, Link]:
        return self._routes.here()

    def _run(self, script: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        """EVALSHA of ``script`` on the server of ``keys`` (one slot) over this thread's link."""
        return self._routes.run(script, keys, argv, deadline)

    def _command(self, deadline: Deadline, *args: Any) -> Any:
        """A command whose first argument after its name is a key of the account."""
        return self._routes.command(deadline, *args)

    def sweep(self, now: float | None = None) -> int:
        """Settle expired reservations nobody touched (everything else expires by TTL)."""
        policy = self.policy
        if policy is None:
            return 0
        settled = 0
        with translating():
            at = self.now() if now is None else now  # one reading for the whole pass
            self._drop_events(at - KEEP)
            old_rows = at - ledger.retention(policy)
            for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                due, account, outbox = self.client.hmget(key, ["nh", "id", "ob"])
                if account is not None and outbox is not None:  # left by a process stopped
                    self._relay_left(account.decode())
                if account is not None:  # the rows of an account no longer charged, too
                    key = self.ledger_key(account.decode())
                    self._run(TRIM, [key], trim_args(old_rows), self._deadline())
                if due is None or account is None or float(due) > at:
                    continue
                try:
                    self.transact(
                        account.decode(), at, lambda view, t: ops.settle_due_holds(policy, view, t)
                    )
                except UnknownAccount:  # gone since the scan (or a stray key): the others stay
                    continue
                settled += 1
        return settled

    def _relay_left(self, account: str) -> None:
        deadline = self._deadline()
        entries = self._run(OUTBOX, self.outbox_keys(account), ["read"], deadline)
        self._drive(relay_outbox(self, account, [1, *entries]), deadline)

    def _drop_events(self, cutoff: float) -> None:
        """Events older than ``cutoff`` out of the log and their accounts' streams."""
        log = self.event_log
        while old := too_old(self.client.xrange(log.log, count=500), cutoff):
            keys, ids = drop_call(log, old)
            self._run(DROP, keys, ids, self._deadline())

    def account_page(self, prefix: str, after: str | None, limit: int) -> list[str]:
        with translating():
            if not self.client.exists(self.index_built_key):
                self._build_index()
            low, high = self.index_range(prefix, after)
            found = self.client.zrangebylex(self.index_key, low, high, start=0, num=limit)
        return [bytes(a).decode() for a in found]

    def _build_index(self) -> None:
        """Put the accounts made before the index in it (once per store: a scan of every
        key), then mark it built; accounts made meanwhile add themselves."""
        ids = self.account_ids()
        for start in range(0, len(ids), 1000):
            self.client.zadd(self.index_key, dict.fromkeys(ids[start : start + 1000], 0))
        self.client.set(self.index_built_key, "1")

    def account_ids(self) -> list[str]:
        found = []
        with translating():
            for key in self.client.scan_iter(match=f"{self.prefix}:*:a", count=500):
                account = self.client.hget(key, "id")
                if account is not None:  # (a stray key)
                    found.append(account.decode())
        return sorted(found)

    def get_setting(self, name: str) -> str | None:
        found = self._command(self._deadline(), "HGET", self.settings_key, name)
        return None if found is None else bytes(found).decode()

    def put_setting(self, name: str, value: str) -> None:
        self._command(self._deadline(), "HSET", self.settings_key, name, value)

    def swap_setting(self, name: str, old: str | None, new: str) -> bool:
        expect = "0" if old is None else "1" + old
        args = [name, expect, new]
        return bool(self._run(SETTING, [self.settings_key], args, self._deadline()) == 1)

    def delete_setting(self, name: str) -> None:
        self._command(self._deadline(), "HDEL", self.settings_key, name)

    def _make_keyring(self) -> KeyRing:
        return RedisKeyRing(self.client, self.prefix)

    def close(self) -> None:
        self._links.close()
        if self._watch is not None:
            from allowance.stores.redis_sentinel import sentinel_clients

            self._watch.close()
            for client in sentinel_clients(self.client):
                client.close()
        self.client.close()
