"""What every part of the store benchmark shares: the constants of the workload, the result
records, small helpers, simulated clocks and the clock ``limits`` reads."""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import limits.storage.redis
import yaml

from allowance import Policy, builtin_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]  # the repository
FEATURE = "transform.virtual_model"
PLAN = "pro"
LIMITS_SPEC = "2/minute;30/day"  # the same two limits, in the ``limits`` notation
MEMORY_FEATURES = ("transform.virtual_model", "export.ai", "background.studio")
GRANTED = "mostly granted"
DENIED = "mostly denied"
ROUNDS = 4  # slices per row and thread count, interleaved with the other rows of its group
RAW_SCRIPT = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}"
RAW_VALUES = (b"pro", b"transform_rate=,1,1800002900:1|transform_daily=1800002900,1,")
UPSERT = "INSERT INTO t(k, n) VALUES (%s, 1) ON CONFLICT (k) DO UPDATE SET n = t.n + 1"
REDIS_FLOOR_RATIO, REDIS_LIMITS_RATIO, PG_RATIO = 0.8, 1.8, 0.7
CREDITS_RATIO = 1.3  # a credit-priced decision costs at most this many seed decisions
CREDIT_COST = 4  # credits one FEATURE request takes in the "credits" rows' pool
QUIET = "events+ledger off"  # the role of the seed's rows with events and the ledger off
EVENTS_RATIO = 0.8  # the seed's decision with events on: at least this × the one with them off
GLOBAL = "user_global"  # the role of the rows whose feature counts a user across accounts
MEMBERS = 8  # the members of an account who take turns asking, in the "credits" rows
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
    # "floor" (raw EVALSHA, bare upsert), "limits", "allowance", "credits" or "user_global"
    role: str
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
    # credits rows: seconds per decision over the seed row's (same server, threads, workload)
    vs_seed: float | None = None
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


def credit_policy() -> Policy:
    """The built-in policy with FEATURE also priced in a monthly pool of AI credits
    (CREDIT_COST each, ample on every plan) and counted per member of the account each day
    (scope ``user``, ample too): the "credits" rows decide FEATURE's two seed limits, the
    pool and the member's count, four counters in two records (the account's and the
    member's), one of them charged 4 units a request."""
    data = builtin_policy().to_data()
    data["limits"]["ai_credits"] = {
        "label": "AI credits",
        "features": [FEATURE],
        "costs": {FEATURE: CREDIT_COST},
        "window": {"type": "calendar", "unit": "month"},
        "plans": {plan["name"]: 10**9 for plan in data["plans"]},
    }
    data["limits"]["member_daily"] = {
        "label": "Generations per member",
        "features": [FEATURE],
        "scope": "user",
        "window": {"type": "calendar", "unit": "day"},
        "plans": {plan["name"]: 10**9 for plan in data["plans"]},
    }
    return parse_policy(yaml.safe_dump(data, sort_keys=False), "builtin + credits")


def quiet_policy() -> Policy:
    """The built-in policy with ``events: false`` and ``ledger: false``: the "events+ledger
    off" rows decide exactly the seed's rows' requests, writing no event and no ledger row
    (the seed's rows write two events a day per account, at the 24th and the 30th generation,
    each through the transaction path, and two ledger rows with every grant)."""
    data = builtin_policy().to_data()
    data["events"] = False
    data["ledger"] = False
    return parse_policy(yaml.safe_dump(data, sort_keys=False), "builtin, events+ledger off")


def global_policy() -> Policy:
    """The built-in policy with FEATURE also counted per user across every account each day
    (scope ``user_global``, ample): the "user_global" rows decide FEATURE's two seed limits
    and the user's count, which on Redis Cluster lives in the user's hash slot (each account
    has members of its own, so the rows measure the path, not contention on one user)."""
    data = builtin_policy().to_data()
    data["limits"]["member_everywhere"] = {
        "label": "Generations per user",
        "features": [FEATURE],
        "scope": "user_global",
        "window": {"type": "calendar", "unit": "day"},
        "plans": {plan["name"]: 10**9 for plan in data["plans"]},
    }
    return parse_policy(yaml.safe_dump(data, sort_keys=False), "builtin + user_global")
