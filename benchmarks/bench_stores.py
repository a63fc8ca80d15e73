"""Decisions per second and latency of ``Limiter.consume`` on the server stores (Redis, Redis
Cluster, PostgreSQL), against same-run baselines, in one thread and in ``--threads`` threads;
plus the Redis memory an active account costs.

Feature: ``transform.virtual_model`` on the Pro plan of the built-in policy, i.e. two limits per
request: 2 per minute (sliding) and 30 per 24 h (anchored), over ``--accounts`` accounts
(default 10,000). Rows, each measured with 1 thread and with ``--threads`` (default 16)
threads:

* ``raw EVALSHA``: redis-py ``evalsha`` of a two-key script that only reads both keys
  (``return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}``), the keys named like
  allowance's (``P:{account}:a`` and ``:c``, one hash tag) and holding values of about the size
  of allowance's. The floor of any decision that takes one round trip.
* ``limits MovingWindow``: the ``limits`` library, ``RedisStorage`` (``RedisClusterStorage`` on
  the cluster) with ``MovingWindowRateLimiter`` and "2/minute;30/day", doing
  ``hit(per_minute, key) and hit(per_day, key)``: one EVALSHA per limit, so two round trips per
  granted request; it charges the per-minute limit even when the per-day one then denies (not
  all or nothing) and skips the per-day one when the per-minute one denies (a denial costs one
  round trip).
* ``allowance redis`` / ``allowance redis+cluster`` (3 masters): one EVALSHA of ``decide.lua``
  per decision, then Python replays the engine on the counters the script returns.
* ``bare upsert``: psycopg in autocommit, one durable statement per request:
  ``INSERT INTO t(k, n) VALUES (%s, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + 1`` on the same
  keys (all present beforehand), at the server's default ``synchronous_commit``.
* ``allowance postgresql``: one READ COMMITTED transaction per decision (two round trips, one
  commit that waits for the WAL flush when it wrote).

Targets (the issue's): allowance on Redis >= 0.8x raw EVALSHA and >= 1.8x limits on Redis
("mostly granted"; Redis Cluster is held to the same ratios against the cluster's own
baselines); allowance on PostgreSQL >= 0.7x the bare upsert. Memory: <= 1 KiB of Redis per
active account.

Workloads (simulated clocks: allowance gets one as ``Limiter(clock=...)``, which the Redis
script then uses instead of Redis ``TIME`` and PostgreSQL instead of ``clock_timestamp()``;
``limits`` reads ``time.time()`` in ``limits.storage.redis``, which is swapped, for the whole
run, for a reader of the clock the calling thread bound last):

* ``mostly granted``, as in ``bench_decisions.py``: each measuring thread has its own clock that
  advances SWEEP_STEP (2,900 s) at the start of each sweep over its accounts, so every account
  asks once every 2,900 simulated seconds and every request is granted (1 per minute <= 2;
  86,400 / 30 = 2,880 <= 2,900). A thread's clock starts where the latest clock of the previous
  slice stopped (see below), so this holds across slices and thread counts.
* ``mostly denied`` (Redis only, allowance and ``limits``): before measuring, each account makes
  one request for 2 units; the clock then stays frozen at that instant, so the per-minute limit
  stays full and every measured request is denied (by allowance after checking both limits and
  working out the retry time and upgrade offer; by ``limits`` at its first ``hit``). A frozen
  clock instead of the real one (``bench_decisions.py``) lets this state outlive the minute, so
  these rows can be interleaved with the others; Redis ``TIME`` would add well under 1 µs.

Threads: with N threads the accounts are split into N disjoint parts (``keys[i::N]``), one per
thread, and each thread has its own client / ``Limiter`` / store / connection: they share only
the server (and the GIL of this one process). For PostgreSQL each thread gets its own store
with a pool of one connection, unless the server has too few free connections for that (then
one store with a pool of N is shared, and the ``clients`` column says so).

Measuring. The rows of one server form a group (Redis: raw, limits and allowance, granted and
denied; Redis Cluster: raw, limits, allowance; PostgreSQL: upsert, allowance). Each row gets a
fresh key prefix (Redis) or schema (PostgreSQL) and an untimed setup, in parallel threads, once
for both thread counts (accounts, then one request per account so its counters exist, or the
"mostly denied" prefill; on PostgreSQL through connections at ``synchronous_commit = off``,
since the state does not depend on it). Then, for each thread count, ``--rounds`` rounds (4):
in each, every row of the group runs one slice, in alternating order (A B C, C B A, ...), so a
load that drifts during the run (this benchmark often shares its machine) weighs on every row
alike. A slice: the threads open their clients, then, started together, a warm-up
(``--seconds`` / 8, at most 0.25 s), a throughput pass and a latency pass of ``--seconds`` /
``--rounds`` each; every thread continues its round-robin where its previous slice stopped.
ops/s: the calls of the throughput passes over their time (each from its start to the end of
the last thread's last call; each thread checks the wall clock after every call, ~0.1 µs
against a round trip of tens of µs). p50/p99: from the latency passes, every call wrapped in
``time.perf_counter_ns``, all threads pooled. ``srv µs/op``: EVALSHA time measured inside Redis
(``INFO commandstats`` deltas over both passes, summed over the masters) per decision. After
the group the prefixes / schemas are deleted.

Memory (standalone Redis): a fresh prefix, ``--accounts`` accounts on Pro, each makes one
``transform.virtual_model``, one ``export.ai`` and one ``background.studio`` request (real clock).
Reported: ``MEMORY USAGE`` of the account's two keys (``P:{a}:a`` hash, ``P:{a}:c`` counters;
the store's ``key(account, suffix)``) averaged over a sample, and the ``INFO memory``
``used_memory`` delta over the whole prefix per account (this includes the main and expires
dictionaries' per-key entries and table growth; on a server others use it is noise-prone).

Servers: ``ALLOWANCE_BENCH_REDIS_URL``, ``ALLOWANCE_BENCH_REDIS_CLUSTER_URL``
(``redis+cluster://host:port``) and ``ALLOWANCE_BENCH_POSTGRES_URL`` when set; otherwise
throwaway ones from ``tests/servers.py``, stopped at the end. The throwaway PostgreSQL runs with
``fsync=off`` and ``synchronous_commit=off``: its rows are then not durable, and the output says
so (it reads both settings from the server). For durable numbers pass a URL.

Usage: ``python benchmarks/bench_stores.py [--seconds S] [--quick] [--json] [--threads N]
[--accounts N] [--rounds R]``. A default run takes about 2.5 minutes. Exit status: 0; 2 if a
workload was not what it claims to be; 3 if a server could not be started.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import operator
import os
import platform
import secrets
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import limits.storage.redis
import psycopg
import redis
import redis.cluster
from limits import parse_many
from limits.storage import RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter

from _table import aligned
from allowance import Limiter
from allowance.stores.postgres import PostgresStore
from allowance.stores.redis import RedisStore

ROOT = Path(__file__).resolve().parents[1]
FEATURE = "transform.virtual_model"
PLAN = "pro"
LIMITS_SPEC = "2/minute;30/day"  # the same two limits, in the ``limits`` notation
MEMORY_FEATURES = ("transform.virtual_model", "export.ai", "background.studio")
SIM_START = 1_800_000_000.0  # 2027-01-15 08:00 UTC; any epoch works
SWEEP_STEP = 2_900.0  # simulated seconds per sweep: >= 86,400 / 30 and >> 60
GRANTED = "mostly granted"
DENIED = "mostly denied"
ROUNDS = 4  # slices per row and thread count, interleaved with the other rows of its group
RAW_SCRIPT = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"
RAW_VALUES = (b"pro", b"transform_rate=,1,1800002900:1|transform_daily=1800002900,1,")
UPSERT = "INSERT INTO t(k, n) VALUES (%s, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + 1"
REDIS_FLOOR_RATIO, REDIS_LIMITS_RATIO, PG_RATIO = 0.8, 1.8, 0.7
MEMORY_TARGET = 1024  # bytes per active account
MEMORY_SAMPLE = 200  # accounts whose keys get a MEMORY USAGE
SERVERS = ("redis", "cluster", "postgresql")
ENV = {
    "redis": "ALLOWANCE_BENCH_REDIS_URL",
    "cluster": "ALLOWANCE_BENCH_REDIS_CLUSTER_URL",
    "postgresql": "ALLOWANCE_BENCH_POSTGRES_URL",
}
SERVER_TITLE = {"redis": "Redis", "cluster": "Redis Cluster", "postgresql": "PostgreSQL"}

Op = Callable[[str], bool]  # one request for an account; True when granted


class ServerUnavailable(RuntimeError):
    """A throwaway server could not be started (binary missing, or it failed)."""


@dataclass
class Contender:
    """A prepared contender for one thread: ``op`` decides one request; ``tick`` (if any)
    starts a sweep over the thread's accounts (advances its simulated clock)."""

    op: Op
    tick: Callable[[], None] | None = None


@dataclass
class Result:
    name: str
    server: str
    role: str  # "floor" (raw EVALSHA, bare upsert), "limits" or "allowance"
    workload: str
    threads: int
    clients: str
    ops_per_s: float
    p50_us: float
    p99_us: float
    grant_ratio: float | None  # None for the floors (they decide nothing)
    calls: int  # calls of the throughput pass, all threads
    timed_calls: int  # calls of the latency pass, all threads
    timed_ops_per_s: float  # throughput of the latency pass (includes the timing overhead)
    server_us_per_op: float | None = None  # EVALSHA time inside Redis per decision
    evalsha_per_op: float | None = None
    floor: str | None = None
    vs_floor: float | None = None  # ops/s over the floor's ops/s (same server and threads)
    vs_limits: float | None = None  # ops/s over limits' ops/s (same server, threads, workload)
    target: str | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Memory:
    accounts: int
    sampled: int
    account_key_bytes: float  # MEMORY USAGE of P:{a}:a, averaged
    counters_key_bytes: float  # MEMORY USAGE of P:{a}:c, averaged
    per_account_keys: float  # the two together
    used_memory_delta: int
    used_memory_per_account: float
    counters_example: str  # one account's counters value
    counters_len_avg: float
    met: bool


# --- helpers ----------------------------------------------------------------------------------


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def add_query(url: str, **params: object) -> str:
    """``url`` with these query parameters set (others kept). Only the query is rewritten (so
    ``postgresql:///db`` keeps its ``//``)."""
    base, _, query = url.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in params]
    pairs += [(k, str(v)) for k, v in params.items()]
    return base + "?" + urlencode(pairs, quote_via=quote)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def new_name(kind: str) -> str:
    """A random prefix / schema name: letters, digits and ``_`` (valid for both)."""
    return f"bench_{kind}_{secrets.token_hex(4)}"


def split(keys: list[str], parts: int) -> list[list[str]]:
    return [keys[i::parts] for i in range(parts) if keys[i::parts]]


def in_parallel(fn: Callable[[list[str]], None], keys: list[str], workers: int) -> None:
    """``fn`` on disjoint parts of ``keys``, one thread per part."""
    parts = split(keys, max(1, workers))
    if len(parts) == 1:
        fn(parts[0])
        return
    with ThreadPoolExecutor(len(parts)) as pool:
        for _ in pool.map(fn, parts):
            pass


class SimTime:
    """Simulated epoch seconds; ``clock`` is a C-level callable (no Python frame per read)."""

    def __init__(self, start: float = SIM_START) -> None:
        self._cell = [start]
        getter = functools.partial(operator.getitem, self._cell, 0)
        self.clock = cast(Callable[[], float], getter)

    def advance(self) -> None:
        self._cell[0] += SWEEP_STEP


class ThreadClock:
    """Each thread reads the simulated clock it bound last."""

    def __init__(self) -> None:
        self._local = threading.local()

    def bind(self, clock: Callable[[], float]) -> None:
        self._local.clock = clock

    def time(self) -> float:
        clock: Callable[[], float] = self._local.clock
        return clock()


LIMITS_CLOCK = ThreadClock()  # what limits reads as time.time() (see limits_time)


@contextlib.contextmanager
def limits_time() -> Iterator[None]:
    """``limits.storage.redis`` reads ``time.time()``; while this lasts it reads the simulated
    clock its thread bound to ``LIMITS_CLOCK`` instead."""
    module: Any = limits.storage.redis
    real = module.time
    module.time = types.SimpleNamespace(time=LIMITS_CLOCK.time)
    try:
        yield
    finally:
        module.time = real


def check_setup(what: str, granted: int, wanted: int) -> None:
    if granted != wanted:
        raise RuntimeError(f"setup: {what} granted {granted} of {wanted} setup requests")


# --- servers ----------------------------------------------------------------------------------


@dataclass
class Servers:
    urls: dict[str, str]
    throwaway: set[str]


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """URLs from the environment, else throwaway servers (started in parallel, stopped at the
    end, each by its own handle)."""
    urls = {name: os.environ[ENV[name]] for name in SERVERS if os.environ.get(ENV[name])}
    missing = [name for name in SERVERS if name not in urls]
    with contextlib.ExitStack() as stack:
        if missing:
            sys.path.insert(0, str(ROOT / "tests"))
            import servers as throwaway  # tests/servers.py

            starts: dict[str, Callable[[], Any]] = {
                "redis": throwaway.start_redis,
                "cluster": throwaway.start_redis_cluster,
                "postgresql": throwaway.start_postgres,
            }
            log(f"starting throwaway servers: {', '.join(SERVER_TITLE[m] for m in missing)}")
            with ThreadPoolExecutor(len(missing)) as pool:
                futures = {name: pool.submit(starts[name]) for name in missing}
            errors = []
            for name, future in futures.items():
                try:
                    handle = future.result()
                except Exception as exc:  # a missing binary, or a server that did not start
                    errors.append(f"{SERVER_TITLE[name]}: {exc}")
                    continue
                stack.callback(handle.stop)
                url = handle.url
                urls[name] = url
            if errors:
                raise ServerUnavailable("; ".join(errors))
        yield Servers(urls, set(missing))


class RedisTarget:
    """A Redis server or cluster: clients, its masters, server-side counters, cleanup."""

    def __init__(self, url: str) -> None:
        self.url = url  # redis://... or redis+cluster://... (allowance's and limits' scheme)
        self.cluster = url.startswith("redis+cluster://")
        self.client_url = "redis://" + url.split("://", 1)[1] if self.cluster else url
        self.monitor = self.client()

    def client(self) -> Any:
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.client_url)
        return redis.Redis.from_url(self.client_url)

    def masters(self) -> list[Any]:
        """Plain clients of every master (the one server when standalone)."""
        if not self.cluster:
            return [self.monitor]
        return [self.monitor.get_redis_connection(n) for n in self.monitor.get_primaries()]

    def evalsha_stats(self) -> tuple[int, int]:
        """(calls, usec) of EVALSHA so far, summed over the masters. Commands a script runs
        are counted under their own names as well, so only EVALSHA is summed."""
        calls = usec = 0
        for node in self.masters():
            stat = node.info("commandstats").get("cmdstat_evalsha", {})
            calls += int(stat.get("calls", 0))
            usec += int(stat.get("usec", 0))
        return calls, usec

    def version(self) -> str:
        return str(self.masters()[0].info("server")["redis_version"])

    def delete_prefix(self, prefix: str) -> int:
        """UNLINK every key under ``prefix:``, node by node, one key per command (a cluster
        refuses multi-key commands across slots)."""
        removed = 0
        for node in self.masters():
            pipe = node.pipeline(transaction=False)
            batch = 0
            for key in node.scan_iter(match=f"{prefix}:*", count=1000):
                pipe.unlink(key)
                batch += 1
                if batch >= 1000:
                    removed += sum(pipe.execute())
                    batch = 0
            if batch:
                removed += sum(pipe.execute())
        return removed

    def close(self) -> None:
        self.monitor.close()


@dataclass
class PgInfo:
    version: str
    fsync: str
    synchronous_commit: str
    free_connections: int

    @property
    def durable(self) -> bool:
        return self.fsync == "on" and self.synchronous_commit != "off"


def pg_info(url: str) -> PgInfo:
    with psycopg.connect(url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else ""

        reserved = int(show("superuser_reserved_connections") or 0)
        exists = conn.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'reserved_connections'"
        ).fetchone()
        if exists:  # PostgreSQL 16+
            reserved += int(show("reserved_connections") or 0)
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        in_use = int(row[0]) if row else 0
        free = int(show("max_connections")) - reserved - in_use
        return PgInfo(show("server_version"), show("fsync"), show("synchronous_commit"), free)


def pg_execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


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

    def op(account: str) -> bool:
        return consume(account, FEATURE).allowed

    return op


def prepare_accounts(lim: Limiter, part: list[str], workload: str, sim: SimTime) -> None:
    for account in part:
        lim.set_account(account, PLAN)
    sim.advance()
    if workload == GRANTED:
        granted = sum(lim.consume(account, FEATURE).allowed for account in part)
    else:
        granted = sum(lim.consume(account, FEATURE, amount=2).allowed for account in part)
    check_setup("allowance", granted, len(part))


class AllowanceRedis(Subject):
    role = "allowance"

    def __init__(self, target: RedisTarget, server: str, workload: str) -> None:
        super().__init__()
        self.target = self.redis = target
        self.server = server
        self.workload = workload
        self.name = f"allowance {'redis+cluster' if target.cluster else 'redis'}"
        self.prefix = new_name("allowance")
        self.url = add_query(target.url, prefix=self.prefix)

    def setup(self, part: list[str]) -> None:
        sim = self.setup_sim()
        with Limiter(store=self.url, clock=sim.clock) as lim:
            prepare_accounts(lim, part, self.workload, sim)

    @contextlib.contextmanager
    def open(self, part: list[str]) -> Iterator[Contender]:
        sim = self.sim()
        # the simulated clock: the script uses it instead of Redis TIME
        with Limiter(store=self.url, clock=sim.clock) as lim:
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

    def __init__(self, url: str, free_connections: int) -> None:
        super().__init__()
        self.base = url
        self.free = free_connections
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
        with Limiter(store=self.setup_url, clock=sim.clock) as lim:
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
            yield Contender(allowance_op(Limiter(store=self.shared, clock=sim.clock)), sim.advance)
            return
        with Limiter(store=self.url, clock=sim.clock) as lim:
            yield Contender(allowance_op(lim), sim.advance)

    def end_run(self) -> None:
        super().end_run()
        if self.shared is not None:
            self.shared.close()
            self.shared = None

    def cleanup(self) -> None:
        self.end_run()
        pg_execute(self.base, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


# --- the driver -------------------------------------------------------------------------------


class Cursor:
    """Where one thread's round-robin over its accounts is; slices continue where the previous
    one stopped, so every slice visits the thread's accounts in turn."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.index = 0

    def stream(self, tick: Callable[[], None] | None) -> Iterator[str]:
        """The accounts from here on, endlessly; ``tick`` at the start of every sweep."""
        keys, n, i = self.keys, len(self.keys), self.index
        while True:
            if i == 0 and tick is not None:
                tick()
            key = keys[i]
            i = i + 1 if i + 1 < n else 0
            self.index = i
            yield key


def run_plain(op: Op, stream: Iterator[str], deadline: float) -> tuple[int, int, float]:
    """Calls ``op`` until ``deadline`` (at least once): (calls, granted, end time)."""
    perf = time.perf_counter
    calls = granted = 0
    for key in stream:
        granted += op(key)
        calls += 1
        if perf() >= deadline:
            break
    return calls, granted, perf()


def run_timed(op: Op, stream: Iterator[str], deadline: float) -> tuple[list[int], int, float]:
    """Like ``run_plain`` but times every call: (latencies in ns, granted, end time)."""
    perf = time.perf_counter
    clock_ns = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    granted = 0
    for key in stream:
        t0 = clock_ns()
        ok = op(key)
        t1 = clock_ns()
        record(t1 - t0)
        granted += ok
        if perf() >= deadline:
            break
    return latencies, granted, perf()


@dataclass
class ThreadOutcome:
    calls: int = 0
    granted: int = 0
    end: float = 0.0
    latencies: list[int] = field(default_factory=list)
    timed_granted: int = 0
    timed_end: float = 0.0


class Runner:
    """One slice of one subject in ``threads`` threads that move through the phases (warm-up,
    throughput pass, latency pass) together: each phase starts when the last thread is ready (a
    barrier), with its deadline set then."""

    def __init__(self, subject: Subject, threads: int, seconds: float, warmup: float) -> None:
        self.subject = subject
        self.threads = threads
        self.seconds = seconds
        self.warmup = warmup
        self.phase = 0
        self.deadline = 0.0
        self.starts: list[float] = []
        self.stats: list[tuple[int, int] | None] = []
        self.errors: list[BaseException] = []
        self.barrier = threading.Barrier(threads, action=self._next_phase)

    def _next_phase(self) -> None:
        phase, self.phase = self.phase, self.phase + 1
        if phase == 1:  # the throughput pass starts: server-side counters first
            self.stats.append(self.subject.stats())
        if phase == 3:  # both passes are over
            self.stats.append(self.subject.stats())
            return
        now = time.perf_counter()
        self.starts.append(now)
        self.deadline = now + (self.warmup if phase == 0 else self.seconds)

    def work(self, index: int, part: list[str], out: ThreadOutcome) -> None:
        try:
            cursor = self.subject.cursors.setdefault((self.threads, index), Cursor(part))
            with self.subject.open(part) as contender:
                op = contender.op
                stream = cursor.stream(contender.tick)
                self.barrier.wait()
                run_plain(op, stream, self.deadline)
                self.barrier.wait()
                out.calls, out.granted, out.end = run_plain(op, stream, self.deadline)
                self.barrier.wait()
                out.latencies, out.timed_granted, out.timed_end = run_timed(
                    op, stream, self.deadline
                )
                self.barrier.wait()  # nobody closes its client while others still measure
        except BaseException as exc:
            self.errors.append(exc)
            self.barrier.abort()

    def run(self, parts: list[list[str]]) -> list[ThreadOutcome]:
        outcomes = [ThreadOutcome() for _ in parts]
        if len(parts) == 1:
            self.work(0, parts[0], outcomes[0])
        else:
            workers = [
                threading.Thread(target=self.work, args=(i, part, out), name=f"bench-{i}")
                for i, (part, out) in enumerate(zip(parts, outcomes, strict=True))
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        real = [e for e in self.errors if not isinstance(e, threading.BrokenBarrierError)]
        if real or self.errors:
            raise (real or self.errors)[0]
        return outcomes


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in us."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0


@dataclass
class Tally:
    """One subject at one thread count, summed over its slices."""

    calls: int = 0
    granted: int = 0
    elapsed: float = 0.0
    latencies: list[int] = field(default_factory=list)
    timed_granted: int = 0
    timed_elapsed: float = 0.0
    evalsha_calls: int = 0
    evalsha_usec: int = 0
    has_stats: bool = False

    def add(self, runner: Runner, outcomes: list[ThreadOutcome]) -> None:
        _, start, timed_start = runner.starts
        self.calls += sum(o.calls for o in outcomes)
        self.granted += sum(o.granted for o in outcomes)
        self.elapsed += max(o.end for o in outcomes) - start
        for o in outcomes:
            self.latencies += o.latencies
            self.timed_granted += o.timed_granted
        self.timed_elapsed += max(o.timed_end for o in outcomes) - timed_start
        before, after = runner.stats
        if before is not None and after is not None:
            self.has_stats = True
            self.evalsha_calls += after[0] - before[0]
            self.evalsha_usec += after[1] - before[1]

    def result(self, subject: Subject, threads: int) -> Result:
        self.latencies.sort()
        total = self.calls + len(self.latencies)
        role = subject.role
        return Result(
            name=subject.name,
            server=subject.server,
            role=role,
            workload=subject.workload,
            threads=threads,
            clients=subject.clients(threads),
            ops_per_s=self.calls / self.elapsed,
            p50_us=percentile(self.latencies, 0.50),
            p99_us=percentile(self.latencies, 0.99),
            grant_ratio=None if role == "floor" else (self.granted + self.timed_granted) / total,
            calls=self.calls,
            timed_calls=len(self.latencies),
            timed_ops_per_s=len(self.latencies) / self.timed_elapsed,
            server_us_per_op=self.evalsha_usec / total if self.has_stats else None,
            evalsha_per_op=self.evalsha_calls / total if self.has_stats else None,
        )


def measure_group(
    makers: list[Callable[[], Subject]],
    keys: list[str],
    thread_counts: list[int],
    seconds: float,
    warmup: float,
    rounds: int,
) -> list[Result]:
    """Rows compared with each other: all set up first, then for each thread count
    ``rounds`` rounds in which each row runs one slice (``seconds / rounds`` per pass, after
    its own warm-up), in alternating order (A B C, C B A, ...), so a load that drifts during
    the run weighs on every row alike."""
    subjects: list[Subject] = []
    results = []
    try:
        for make in makers:
            subject = make()
            subjects.append(subject)
            subject.begin()
            began = time.perf_counter()
            in_parallel(subject.setup, keys, subject.setup_workers(max(thread_counts)))
            took = time.perf_counter() - began
            log(f"  {subject.name:<33} {subject.workload:<14} setup {took:5.1f} s")
        for threads in (min(t, len(keys)) for t in thread_counts):
            parts = split(keys, threads)
            tallies = [Tally() for _ in subjects]
            for round_ in range(rounds):
                order = list(zip(subjects, tallies, strict=True))
                for subject, tally in order if round_ % 2 == 0 else order[::-1]:
                    subject.start_run(threads)
                    try:
                        gc.collect()
                        runner = Runner(subject, threads, seconds / rounds, warmup)
                        tally.add(runner, runner.run(parts))
                    finally:
                        subject.end_run()
            for subject, tally in zip(subjects, tallies, strict=True):
                result = tally.result(subject, threads)
                results.append(result)
                granted = (
                    "" if result.grant_ratio is None else f"  granted {result.grant_ratio:6.1%}"
                )
                log(
                    f"  {subject.name:<33} {subject.workload:<14} {threads:>2} thr "
                    f"{result.ops_per_s:>9,.0f}/s  p50 {result.p50_us:7.1f} us{granted}"
                )
    finally:
        for subject in subjects:
            subject.cleanup()
    return results


# --- memory -----------------------------------------------------------------------------------


def measure_memory(target: RedisTarget, keys: list[str], workers: int) -> Memory:
    prefix = new_name("memory")
    url = add_query(target.url, prefix=prefix)
    node = target.masters()[0]

    def use(part: list[str], url: str = url) -> None:
        with Limiter(store=url) as lim:  # the real clock: Redis TIME, as in production
            for account in part:
                lim.set_account(account, PLAN)
                for feature in MEMORY_FEATURES:
                    if not lim.consume(account, feature).allowed:
                        raise RuntimeError(f"memory: {feature} denied for {account}")

    def settled_used_memory(clients: int) -> int:
        """used_memory once the clients this measurement opened are gone (a client's buffers
        are not per-account memory); waits at most ~2 s."""
        for _ in range(200):
            if int(node.info("clients")["connected_clients"]) <= clients:
                break
            time.sleep(0.01)
        return int(node.info("memory")["used_memory"])

    # the compiled scripts are cached by the server once, whatever the prefix: load them first
    warm = new_name("memory_warmup")
    use(keys[:1], add_query(target.url, prefix=warm))
    target.delete_prefix(warm)
    try:
        gc.collect()
        clients = int(node.info("clients")["connected_clients"])
        before = settled_used_memory(clients)
        in_parallel(use, keys, workers)
        after = settled_used_memory(clients)
        store = RedisStore.from_url(url)
        try:
            sample = keys[:: max(1, len(keys) // MEMORY_SAMPLE)][:MEMORY_SAMPLE]
            a_sizes = [int(node.memory_usage(store.key(k, "a"), samples=0)) for k in sample]
            c_sizes = [int(node.memory_usage(store.key(k, "c"), samples=0)) for k in sample]
            values = [node.get(store.key(k, "c")) or b"" for k in sample]
        finally:
            store.close()
    finally:
        target.delete_prefix(prefix)
    a_avg = sum(a_sizes) / len(a_sizes)
    c_avg = sum(c_sizes) / len(c_sizes)
    delta = after - before
    per_account = delta / len(keys)
    return Memory(
        accounts=len(keys),
        sampled=len(sample),
        account_key_bytes=a_avg,
        counters_key_bytes=c_avg,
        per_account_keys=a_avg + c_avg,
        used_memory_delta=delta,
        used_memory_per_account=per_account,
        counters_example=values[0].decode(),
        counters_len_avg=sum(len(v) for v in values) / len(values),
        met=a_avg + c_avg <= MEMORY_TARGET and per_account <= MEMORY_TARGET,
    )


# --- the run ----------------------------------------------------------------------------------


def groups(
    redis_target: RedisTarget, cluster_target: RedisTarget, pg_url: str, pg: PgInfo
) -> list[list[Callable[[], Subject]]]:
    """The rows, in table order, in the groups whose rows are measured interleaved."""
    return [
        [
            lambda: RawEvalsha(redis_target, "redis"),
            lambda: LimitsRedis(redis_target, "redis", GRANTED),
            lambda: AllowanceRedis(redis_target, "redis", GRANTED),
            lambda: LimitsRedis(redis_target, "redis", DENIED),
            lambda: AllowanceRedis(redis_target, "redis", DENIED),
        ],
        [
            lambda: RawEvalsha(cluster_target, "cluster"),
            lambda: LimitsRedis(cluster_target, "cluster", GRANTED),
            lambda: AllowanceRedis(cluster_target, "cluster", GRANTED),
        ],
        [
            lambda: BareUpsert(pg_url),
            lambda: AllowancePostgres(pg_url, pg.free_connections),
        ],
    ]


def compare(results: list[Result]) -> None:
    """Ratios against the baselines of the same server and thread count, targets, sanity."""
    floors = {(r.server, r.threads): r for r in results if r.role == "floor"}
    limits_rows = {(r.server, r.threads, r.workload): r for r in results if r.role == "limits"}
    for r in results:
        if r.role == "floor":
            continue
        floor = floors.get((r.server, r.threads))
        if floor is not None:
            r.floor = floor.name
            r.vs_floor = r.ops_per_s / floor.ops_per_s
        base = limits_rows.get((r.server, r.threads, r.workload))
        if r.role == "allowance" and base is not None:
            r.vs_limits = r.ops_per_s / base.ops_per_s
        if r.role == "allowance" and r.workload == GRANTED:
            if r.server == "postgresql":
                r.target = f"≥{PG_RATIO}× upsert"
                r.met = (r.vs_floor or 0.0) >= PG_RATIO
            else:
                r.target = f"≥{REDIS_FLOOR_RATIO}× raw, ≥{REDIS_LIMITS_RATIO}× limits"
                r.met = (r.vs_floor or 0.0) >= REDIS_FLOOR_RATIO and (
                    r.vs_limits or 0.0
                ) >= REDIS_LIMITS_RATIO
        if r.grant_ratio is not None:  # a workload that is not what it claims to be
            if r.workload == GRANTED and r.grant_ratio < 0.95:
                r.notes.append("INVALID: expected nearly all granted")
            if r.workload == DENIED and r.grant_ratio > 0.05:
                r.notes.append("INVALID: expected nearly all denied")


def run(
    makers: list[list[Callable[[], Subject]]],
    keys: list[str],
    thread_counts: list[int],
    seconds: float,
    warmup: float,
    rounds: int,
) -> list[Result]:
    """Every group at every thread count; the results ordered by thread count, then row."""
    results = []
    for group in makers:
        results += measure_group(group, keys, thread_counts, seconds, warmup, rounds)
    results.sort(key=lambda r: r.threads)  # stable: the row order stays within a thread count
    compare(results)
    return results


# --- output -----------------------------------------------------------------------------------


def table(results: list[Result]) -> str:
    header = (
        "store / baseline",
        "thr",
        "clients",
        "workload",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "granted",
        "srv µs/op",
        "vs floor",
        "vs limits",
        "target",
        "met",
    )

    def floor_text(r: Result) -> str:
        if r.vs_floor is None:
            return "(floor)" if r.role == "floor" else ""
        return f"{r.vs_floor:.2f}× {'upsert' if r.server == 'postgresql' else 'raw'}"

    rows = [
        (
            r.name,
            str(r.threads),
            r.clients,
            r.workload,
            f"{r.ops_per_s:,.0f}",
            f"{r.p50_us:.1f}",
            f"{r.p99_us:.1f}",
            "n/a" if r.grant_ratio is None else f"{r.grant_ratio:.1%}",
            "" if r.server_us_per_op is None else f"{r.server_us_per_op:.1f}",
            floor_text(r),
            "" if r.vs_limits is None else f"{r.vs_limits:.2f}×",
            r.target or "",
            "" if r.met is None else ("met" if r.met else "NO"),
        )
        for r in results
    ]
    return aligned(header, rows, {1, 4, 5, 6, 7, 8, 9, 10}, [r.threads for r in results])


def targets(results: list[Result], memory: Memory) -> list[str]:
    out = [
        f"allowance on Redis ≥ {REDIS_FLOOR_RATIO}× raw EVALSHA and ≥ {REDIS_LIMITS_RATIO}× "
        "limits on Redis (mostly granted; the cluster against its own baselines):"
    ]
    for r in results:
        if r.role == "allowance" and r.workload == GRANTED and r.server != "postgresql":
            out.append(
                f"  {r.name:<26} {r.threads:>2} thr: {r.vs_floor or 0.0:.2f}× raw EVALSHA, "
                f"{r.vs_limits or 0.0:.2f}× limits -> {'met' if r.met else 'NO'}"
            )
    out.append(f"allowance on PostgreSQL ≥ {PG_RATIO}× the bare upsert:")
    for r in results:
        if r.role == "allowance" and r.server == "postgresql":
            out.append(
                f"  {r.name:<26} {r.threads:>2} thr: {r.vs_floor or 0.0:.2f}× upsert -> "
                f"{'met' if r.met else 'NO'}"
            )
    out.append(
        f"Redis memory ≤ {MEMORY_TARGET} B per active account: {memory.per_account_keys:.0f} B "
        f"(MEMORY USAGE of its keys), {memory.used_memory_per_account:.0f} B (used_memory "
        f"delta) -> {'met' if memory.met else 'NO'}"
    )
    return out


def memory_text(memory: Memory) -> list[str]:
    return [
        f"Redis memory per active account ({memory.accounts:,} Pro accounts, each after one "
        f"{', one '.join(MEMORY_FEATURES)} request, real clock):",
        f"  MEMORY USAGE, mean of {memory.sampled} accounts: P:{{a}}:a (account hash) "
        f"{memory.account_key_bytes:.0f} B + P:{{a}}:c (counters) {memory.counters_key_bytes:.0f}"
        f" B = {memory.per_account_keys:.0f} B",
        f"  INFO memory used_memory delta over the prefix: {memory.used_memory_delta:,} B = "
        f"{memory.used_memory_per_account:.0f} B per account (incl. dict/expires entries)",
        f"  counters value: {memory.counters_len_avg:.0f} chars on average, e.g. "
        f"{memory.counters_example!r}",
    ]


def versions() -> dict[str, str]:
    out = {}
    for name in ("allowance", "limits", "redis", "hiredis", "psycopg", "psycopg-pool"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="length of each timed pass (throughput, then latency) of a measurement "
        "(default 2, or 0.3 with --quick)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: ~0.3 s passes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--threads", type=int, default=16, help="threads of the concurrent measurement (16)"
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"interleaved slices per row and thread count (default {ROUNDS}, or 2 with --quick)",
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 2.0
    if args.rounds is None:
        args.rounds = 2 if args.quick else ROUNDS
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds: float = args.seconds
    rounds: int = args.rounds
    warmup = min(0.25, max(0.02, seconds / 8))  # per slice
    keys = [f"acct-{i:05d}" for i in range(args.accounts)]
    thread_counts = [1] if args.threads == 1 else [1, args.threads]
    began = time.perf_counter()
    try:
        with servers() as found, contextlib.ExitStack() as stack:
            redis_target = RedisTarget(found.urls["redis"])
            stack.callback(redis_target.close)
            cluster_target = RedisTarget(found.urls["cluster"])
            stack.callback(cluster_target.close)
            if not cluster_target.cluster:
                raise SystemExit(f"{ENV['cluster']} must be a redis+cluster:// URL")
            pg_url = found.urls["postgresql"]
            pg = pg_info(pg_url)
            env: dict[str, Any] = {
                "python": sys.version.split()[0],
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                **versions(),
                "redis_server": redis_target.version(),
                "redis_cluster_masters": len(cluster_target.masters()),
                "postgresql_server": pg.version,
                "postgresql_fsync": pg.fsync,
                "postgresql_synchronous_commit": pg.synchronous_commit,
                "postgresql_durable": pg.durable,
                "servers": {
                    name: {
                        "url": redact(found.urls[name]),
                        "source": "throwaway" if name in found.throwaway else ENV[name],
                    }
                    for name in SERVERS
                },
                "accounts": args.accounts,
                "threads": thread_counts,
                "feature": FEATURE,
                "plan": PLAN,
                "seconds_per_pass": seconds,
                "rounds": rounds,
                "warmup_seconds_per_slice": warmup,
                "sweep_step_simulated_s": SWEEP_STEP,
            }
            log(
                f"bench_stores: {args.accounts:,} accounts, threads {thread_counts}, "
                f"{seconds:g} s per pass in {rounds} slices, warm-up {warmup:g} s per slice"
            )
            log("memory:")
            memory = measure_memory(redis_target, keys, args.threads)
            log(f"  {memory.per_account_keys:.0f} B keys, {memory.used_memory_per_account:.0f} B")
            makers = groups(redis_target, cluster_target, pg_url, pg)
            with limits_time():
                results = run(makers, keys, thread_counts, seconds, warmup, rounds)
    except ServerUnavailable as exc:
        log(f"bench_stores: a server is unavailable: {exc}")
        return 3
    env["elapsed_s"] = round(time.perf_counter() - began, 1)
    invalid = [r for r in results if r.notes]
    if args.json:
        print(
            json.dumps(
                {
                    "environment": env,
                    "results": [asdict(r) for r in results],
                    "memory": asdict(memory),
                    "targets": targets(results, memory),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        return 2 if invalid else 0
    v = env
    print(
        f"allowance {v['allowance']} vs limits {v['limits']}; redis-py {v['redis']} (hiredis "
        f"{v['hiredis']}), psycopg {v['psycopg']}; Python {v['python']}, {v['platform']}, "
        f"{v['cpus']} CPUs"
    )
    for name in SERVERS:
        server = env["servers"][name]
        source = "throwaway" if server["source"] == "throwaway" else f"from {server['source']}"
        extra = {
            "redis": f"Redis {v['redis_server']}",
            "cluster": f"{v['redis_cluster_masters']} masters",
            "postgresql": f"PostgreSQL {pg.version}, fsync={pg.fsync}, "
            f"synchronous_commit={pg.synchronous_commit}",
        }[name]
        print(f"{SERVER_TITLE[name]}: {server['url']} ({source}; {extra})")
    if not pg.durable:
        print(
            "NOTE: this PostgreSQL does not flush commits to disk (fsync or synchronous_commit "
            "off): the PostgreSQL rows are NOT durable; set ALLOWANCE_BENCH_POSTGRES_URL to a "
            "durable server for real numbers."
        )
    print(
        f"{FEATURE} on {PLAN} (2/min sliding + 30/24 h anchored), {args.accounts:,} accounts; "
        f"with N threads each has its own client/Limiter over 1/N of the accounts; per row and "
        f"thread count {seconds:g} s throughput + {seconds:g} s latency passes, in {rounds} "
        f"slices interleaved with the other rows of the same server (each after a {warmup:g} s "
        f"warm-up); srv µs/op = EVALSHA time inside Redis per decision; run took "
        f"{env['elapsed_s']} s"
    )
    print()
    print(table(results))
    print()
    print("\n".join(memory_text(memory)))
    print()
    print("Targets (issue):")
    print("\n".join(targets(results, memory)))
    for r in invalid:
        print(f"{r.name} / {r.threads} thr / {r.workload}: {'; '.join(r.notes)}")
    return 2 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
