"""The contenders: allowance on ``memory://`` and SQLite, and their baselines (``limits`` on
its memory storage, a bare SQLite upsert), each set up for one workload."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import yaml
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from _simtime import SimTime
from allowance import Limiter, Policy, builtin_policy, parse_policy
from decisions.common import (
    FEATURE,
    GRANTED,
    LIMITS_SPEC,
    PLAN,
    Contender,
    Op,
    limits_time,
)

# --- contenders -----------------------------------------------------------------------------


def allowance_op(lim: Limiter) -> Op:
    consume = lim.consume

    def op(account: str) -> bool:
        return consume(account, FEATURE).allowed

    return op


def prepare_allowance(lim: Limiter, keys: list[str], workload: str, sim: SimTime) -> None:
    """Accounts, then the untimed setup of the workload (see ``bench_decisions.py``)."""
    for key in keys:
        lim.set_account(key, PLAN)
    if workload == GRANTED:
        sim.advance()
        op = allowance_op(lim)
        granted = sum(op(key) for key in keys)
    else:
        granted = sum(lim.consume(key, FEATURE, amount=2).allowed for key in keys)
    if granted != len(keys):
        raise SystemExit(f"setup: only {granted} of {len(keys)} setup requests were granted")


@contextlib.contextmanager
def allowance_memory(
    keys: list[str], workload: str, policy: Policy | None = None
) -> Iterator[Contender]:
    sim = SimTime()
    # "mostly granted": the simulated clock; "mostly denied": none, the store reads its own
    clock = sim.clock if workload == GRANTED else None
    with Limiter(policy, store="memory://", clock=clock) as lim:
        prepare_allowance(lim, keys, workload, sim)
        yield Contender(allowance_op(lim), sim.advance if workload == GRANTED else None)


@contextlib.contextmanager
def allowance_sqlite(
    keys: list[str], workload: str, sync: str, tmp: Path, policy: Policy | None = None
) -> Iterator[Contender]:
    sim = SimTime()
    clock = sim.clock if workload == GRANTED else None
    quiet = "" if policy is None else "-quiet"
    path = tmp / f"allowance-{workload.split()[1]}-{sync.lower()}{quiet}.db"
    # the state is built through a synchronous=normal connection (fast; the file is the same)
    with Limiter(policy, store=f"sqlite:///{path}?synchronous=normal", clock=clock) as setup:
        prepare_allowance(setup, keys, workload, sim)
    # FULL is the store's default: its URL takes no option
    url = f"sqlite:///{path}" if sync == "FULL" else f"sqlite:///{path}?synchronous={sync.lower()}"
    with Limiter(policy, store=url, clock=clock) as lim:
        assert getattr(lim.store, "synchronous", None) == sync
        yield Contender(allowance_op(lim), sim.advance if workload == GRANTED else None)


@contextlib.contextmanager
def limits_memory(keys: list[str], workload: str) -> Iterator[Contender]:
    sim = SimTime()
    with limits_time(sim.clock if workload == GRANTED else None):
        storage = MemoryStorage()
        hit = MovingWindowRateLimiter(storage).hit
        per_minute, per_day = parse_many(LIMITS_SPEC)

        def op(key: str) -> bool:
            # The natural use of ``limits`` for two limits. Unlike allowance (all or nothing),
            # it charges the per-minute limit even when the per-day one then denies, and it
            # skips the per-day check when the per-minute one denies.
            return hit(per_minute, key) and hit(per_day, key)

        if workload == GRANTED:
            sim.advance()
            granted = sum(op(key) for key in keys)
        else:
            granted = sum(
                hit(per_minute, key, cost=2) and hit(per_day, key, cost=2) for key in keys
            )
        if granted != len(keys):
            raise SystemExit(f"setup: limits granted {granted} of {len(keys)} setup requests")
        try:
            yield Contender(op, sim.advance if workload == GRANTED else None)
        finally:
            storage.timer.cancel()  # its expiry thread, so it does not run into the next row
            storage.timer.join()
            storage.reset()


UPSERT = "INSERT INTO t (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = n + 1"


@contextlib.contextmanager
def bare_upsert(keys: list[str], sync: str, tmp: Path, tag: str) -> Iterator[Contender]:
    path = tmp / f"upsert-{tag}-{sync.lower()}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {sync}")
        conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID")
        conn.execute("BEGIN IMMEDIATE")  # every key exists: the measured upserts update a row
        conn.executemany("INSERT INTO t (k, n) VALUES (?, 0)", ((k,) for k in keys))
        conn.execute("COMMIT")
        execute = conn.execute

        def op(key: str) -> bool:
            execute("BEGIN IMMEDIATE")
            execute(UPSERT, (key,))
            execute("COMMIT")
            return True

        yield Contender(op, None)
    finally:
        conn.close()


def quiet_policy() -> Policy:
    """The built-in policy with ``events: false`` and ``ledger: false`` (issue 13: the seed's
    decision with both on stays >= 0.8x the same decision with both off)."""
    data = builtin_policy().to_data()
    data["events"] = False
    data["ledger"] = False
    return parse_policy(yaml.safe_dump(data, sort_keys=False), "builtin, events+ledger off")
