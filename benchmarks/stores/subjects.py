"""The rows: what one row measures (a baseline or allowance on one server), its setup, the
contender each measuring thread opens, and its cleanup."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
from limits import parse_many
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from _simtime import SIM_START, SWEEP_STEP, SimTime
from allowance import Limiter, Policy
from allowance.stores.postgres import PostgresStore
from stores.common import (
    FEATURE,
    GRANTED,
    LIMITS_CLOCK,
    LIMITS_SPEC,
    MEMBERS,
    PLAN,
    RAW_SCRIPT,
    RAW_VALUES,
    UPSERT,
    Contender,
    Cursor,
    Op,
    add_query,
    check_setup,
    new_name,
)
from stores.servers import RedisTarget, pg_execute

# --- subjects: what one row measures ------------------------------------------------------------


class Subject:
    """One row. ``begin``, then ``setup`` in parallel on disjoint parts of the accounts; then
    one run per slice: ``start_run(threads)``, each measuring thread ``open``s its own
    contender on its part, ``end_run()``; ``cleanup`` at the end.

    Simulated time: the setup uses every account once at ``SIM_START + SWEEP_STEP``. Each
    thread of a run gets a clock starting where the latest clock of the previous run (or the
    setup) stopped; "mostly granted" advances it at each of the thread's sweeps, so every
    account is used at most once per SWEEP_STEP across runs too; "mostly denied" never does."""

    name = ""
    server = ""
    role = ""
    workload = GRANTED
    target: RedisTarget | None = None

    def __init__(self) -> None:
        self.sim_now = SIM_START + SWEEP_STEP  # where the setup leaves the accounts
        self._sims: list[SimTime] = []
        self.cursors: dict[tuple[int, int], Cursor] = {}  # (threads, thread index) -> cursor

    def sim(self) -> SimTime:
        """A clock for one measuring thread of the current run."""
        sim = SimTime(self.sim_now)
        self._sims.append(sim)  # list.append is atomic
        return sim

    def setup_sim(self) -> SimTime:
        """A clock for one setup thread: it uses each of its accounts at ``SIM_START +
        SWEEP_STEP`` (after its one ``advance``)."""
        return SimTime()

    def clients(self, threads: int) -> str:
        return "1 client" if threads == 1 else f"{threads} clients"

    def setup_workers(self, threads: int) -> int:
        return threads

    def begin(self) -> None:
        pass

    def setup(self, part: list[str]) -> None:
        pass

    def start_run(self, threads: int) -> None:
        self._sims = []

    def open(self, part: list[str]) -> contextlib.AbstractContextManager[Contender]:
        raise NotImplementedError

    def end_run(self) -> None:
        self.sim_now = max([self.sim_now, *(s.clock() for s in self._sims)])

    def cleanup(self) -> None:
        pass

    def stats(self) -> tuple[int, int] | None:
        return None if self.target is None else self.target.evalsha_stats()


class RawEvalsha(Subject):
    role = "floor"

    def __init__(self, target: RedisTarget, server: str) -> None:
        super().__init__()
        self.target = self.redis = target
        self.server = server
        self.name = f"raw EVALSHA {'redis+cluster' if target.cluster else 'redis'}"
        self.prefix = new_name("raw")
        self.sha = ""

    def begin(self) -> None:
        for node in self.redis.masters():  # every master, wherever the keys land
            self.sha = node.script_load(RAW_SCRIPT)

    def setup(self, part: list[str]) -> None:
        client = self.redis.client()
        try:
            pipe = client.pipeline(transaction=False)
            for account in part:
                pipe.set(f"{self.prefix}:{{{account}}}:a", RAW_VALUES[0])
                pipe.set(f"{self.prefix}:{{{account}}}:c", RAW_VALUES[1])
            pipe.execute()
        finally:
            client.close()

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        client = self.redis.client()
        evalsha, sha, prefix = client.evalsha, self.sha, self.prefix

        def op(account: str) -> bool:
            # key names built per call, as a caller (and allowance) does
            evalsha(sha, 2, f"{prefix}:{{{account}}}:a", f"{prefix}:{{{account}}}:c")
            return True

        try:
            yield Contender(op)
        finally:
            client.close()

    def cleanup(self) -> None:
        self.redis.delete_prefix(self.prefix)


class LimitsRedis(Subject):
    role = "limits"

    def __init__(self, target: RedisTarget, server: str, workload: str) -> None:
        super().__init__()
        self.target = self.redis = target
        self.server = server
        self.workload = workload
        self.name = f"limits MovingWindow {'redis+cluster' if target.cluster else 'redis'}"
        self.prefix = new_name("limits")
        self.per_minute, self.per_day = parse_many(LIMITS_SPEC)

    def storage(self) -> RedisStorage:
        if self.redis.cluster:
            return RedisClusterStorage(self.redis.url, key_prefix=self.prefix)
        return RedisStorage(self.redis.url, key_prefix=self.prefix)

    def setup(self, part: list[str]) -> None:
        storage = self.storage()
        hit = MovingWindowRateLimiter(storage).hit
        sim = self.setup_sim()
        LIMITS_CLOCK.bind(sim.clock)
        sim.advance()
        try:
            if self.workload == GRANTED:
                granted = sum(hit(self.per_minute, k) and hit(self.per_day, k) for k in part)
            else:
                granted = sum(
                    hit(self.per_minute, k, cost=2) and hit(self.per_day, k, cost=2) for k in part
                )
            check_setup("limits", granted, len(part))
        finally:
            storage.storage.close()

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        storage = self.storage()
        hit = MovingWindowRateLimiter(storage).hit
        per_minute, per_day = self.per_minute, self.per_day
        sim = self.sim()
        LIMITS_CLOCK.bind(sim.clock)

        def op(key: str) -> bool:
            # The natural use of limits for two limits: one EVALSHA (round trip) per limit;
            # the per-minute limit is charged even when the per-day one then denies, and the
            # per-day one is not checked when the per-minute one denies.
            return hit(per_minute, key) and hit(per_day, key)

        try:
            yield Contender(op, sim.advance if self.workload == GRANTED else None)
        finally:
            storage.storage.close()

    def cleanup(self) -> None:
        self.redis.delete_prefix(self.prefix)


def allowance_op(lim: Limiter) -> Op:
    consume = lim.consume
    if FEATURE in lim.policy.user_features:  # members take turns
        members = itertools.cycle([f"m{i}" for i in range(MEMBERS)])
        if any(limit.scope == "user_global" for limit in lim.policy.limits_of(FEATURE)):

            def by_own_member(account: str) -> bool:  # members of this account alone
                return consume(account, FEATURE, user=f"{account}.{next(members)}").allowed

            return by_own_member

        def by_member(account: str) -> bool:
            return consume(account, FEATURE, user=next(members)).allowed

        return by_member

    def op(account: str) -> bool:
        return consume(account, FEATURE).allowed

    return op


def prepare_accounts(lim: Limiter, part: list[str], workload: str, sim: SimTime) -> None:
    for account in part:
        lim.set_account(account, PLAN)
    sim.advance()
    member = FEATURE in lim.policy.user_features
    if workload == GRANTED:
        granted = sum(
            lim.consume(account, FEATURE, user=f"{account}.m0" if member else None).allowed
            for account in part
        )
    else:
        granted = sum(
            lim.consume(
                account, FEATURE, amount=2, user=f"{account}.m0" if member else None
            ).allowed
            for account in part
        )
    check_setup("allowance", granted, len(part))


class AllowanceRedis(Subject):
    role = "allowance"

    def __init__(
        self,
        target: RedisTarget,
        server: str,
        workload: str,
        policy: Policy | None = None,
        row: str = "credits",
    ) -> None:
        super().__init__()
        self.target = self.redis = target
        self.server = server
        self.workload = workload
        # None: the built-in one; else credit_policy() (a "credits" row) or global_policy()
        self.policy = policy
        self.name = f"allowance {'redis+cluster' if target.cluster else 'redis'}"
        if policy is not None:
            self.name, self.role = f"{self.name} {row}", row
        self.prefix = new_name("allowance")
        self.url = add_query(target.url, prefix=self.prefix)

    def setup(self, part: list[str]) -> None:
        sim = self.setup_sim()
        with Limiter(self.policy, store=self.url, clock=sim.clock) as lim:
            prepare_accounts(lim, part, self.workload, sim)

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        sim = self.sim()
        # the simulated clock: the script uses it instead of Redis TIME
        with Limiter(self.policy, store=self.url, clock=sim.clock) as lim:
            yield Contender(allowance_op(lim), sim.advance if self.workload == GRANTED else None)

    def cleanup(self) -> None:
        self.redis.delete_prefix(self.prefix)


class BareUpsert(Subject):
    name = "bare upsert postgresql"
    server = "postgresql"
    role = "floor"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.schema = new_name("upsert")

    def clients(self, threads: int) -> str:
        return "1 conn" if threads == 1 else f"{threads} conns"

    def begin(self) -> None:
        pg_execute(self.url, f"CREATE SCHEMA {self.schema}")
        pg_execute(
            self.url, f"CREATE TABLE {self.schema}.t (k text PRIMARY KEY, n integer NOT NULL)"
        )

    def connect(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.url, autocommit=True)
        conn.execute(f"SET search_path TO {self.schema}")
        return conn

    def setup(self, part: list[str]) -> None:
        with self.connect() as conn, conn.transaction(), conn.cursor() as cur:
            # every key exists: the measured upserts update a row
            cur.executemany("INSERT INTO t (k, n) VALUES (%s, 0)", [(k,) for k in part])

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        conn = self.connect()
        execute = conn.execute

        def op(key: str) -> bool:
            execute(UPSERT, (key,))
            return True

        try:
            yield Contender(op)
        finally:
            conn.close()

    def cleanup(self) -> None:
        pg_execute(self.url, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class AllowancePostgres(Subject):
    name = "allowance postgresql"
    server = "postgresql"
    role = "allowance"

    def __init__(
        self,
        url: str,
        free_connections: int,
        policy: Policy | None = None,
        row: str = "credits",
    ) -> None:
        super().__init__()
        self.base = url
        self.free = free_connections
        # None: the built-in one; else credit_policy() (a "credits" row) or global_policy()
        self.policy = policy
        if policy is not None:
            self.name, self.role = f"{self.name} {row}", row
        self.schema = new_name("allowance")
        self.shared: PostgresStore | None = None
        self.pool = 1
        self.url = add_query(url, schema=self.schema, pool_min=1, pool_max=1)
        # the setup writes through connections that do not wait for the WAL flush
        self.setup_url = add_query(self.url, options="-c synchronous_commit=off")

    def share(self, threads: int) -> bool:
        """One store (pool of ``threads``) for all threads when the server has too few free
        connections for one store per thread (a few are kept for the harness)."""
        return threads > 1 and threads + 4 > self.free

    def clients(self, threads: int) -> str:
        if threads == 1:
            return "1 store, pool 1"
        if self.share(threads):
            return f"1 shared store, pool {self.pool}"
        return f"{threads} stores, pool 1 each"

    def setup_workers(self, threads: int) -> int:
        return max(1, min(threads, self.free - 4))

    def begin(self) -> None:
        PostgresStore.from_url(self.setup_url).close()  # creates the schema once, up front

    def setup(self, part: list[str]) -> None:
        sim = self.setup_sim()
        with Limiter(self.policy, store=self.setup_url, clock=sim.clock) as lim:
            prepare_accounts(lim, part, GRANTED, sim)

    def start_run(self, threads: int) -> None:
        super().start_run(threads)
        if self.share(threads):
            self.pool = max(1, min(threads, self.free - 4))
            url = add_query(self.url, pool_min=self.pool, pool_max=self.pool)
            self.shared = PostgresStore.from_url(url)

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        sim = self.sim()
        if self.shared is not None:
            shared = Limiter(self.policy, store=self.shared, clock=sim.clock)
            yield Contender(allowance_op(shared), sim.advance)
            return
        with Limiter(self.policy, store=self.url, clock=sim.clock) as lim:
            yield Contender(allowance_op(lim), sim.advance)

    def end_run(self) -> None:
        super().end_run()
        if self.shared is not None:
            self.shared.close()
            self.shared = None

    def cleanup(self) -> None:
        self.end_run()
        pg_execute(self.base, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


class AllowancePgBouncer(AllowancePostgres):
    """The same decisions through PgBouncer in transaction pooling mode: statements are sent
    unnamed (detected), so this row is what giving up the prepared fast path costs."""

    name = "allowance postgresql pgbouncer"
    role = "pooled"  # compared with the upsert on the server itself; no target of its own

    def __init__(self, bouncer_url: str, direct_url: str, free_connections: int) -> None:
        super().__init__(bouncer_url, free_connections)
        self.base = direct_url  # the schema is dropped on the server itself
        self.setup_url = self.url  # PgBouncer refuses the startup parameter "options"
