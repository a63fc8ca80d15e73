"""Decisions per second and latency of ``Limiter.consume``, against same-run baselines.

Feature: ``transform.virtual_model`` on the Pro plan of the built-in policy, i.e. two limits per
request: 2 per minute (sliding) and 30 per 24 h (anchored), over ``--accounts`` accounts
(default 10,000) visited round-robin, single-threaded.

Contenders, each measured right after its baseline, in the same process and run:

* ``allowance memory://`` vs ``limits`` ``MovingWindowRateLimiter`` + ``MemoryStorage`` with
  "2/minute;30/day", doing ``hit(per_minute, key) and hit(per_day, key)``. Its storage runs an
  expiry thread (a ``threading.Timer`` re-armed every 10 ms while hits arrive, walking every
  key), which competes for the GIL: part of its cost in one process, so it is counted in its
  ops/s; the "p50 ratio" column compares per-call speed without it.
* ``allowance sqlite`` at sync=FULL (the store's default) vs a bare one-row upsert in
  ``BEGIN IMMEDIATE ... COMMIT`` on a WAL file at ``synchronous=FULL``;
* ``allowance sqlite`` at sync=NORMAL vs the same bare upsert at ``synchronous=NORMAL``.

Workloads:

* ``mostly granted``: a simulated clock that advances SWEEP_STEP (2,900 s) at the start of each
  full sweep over the accounts, so every account asks once every 2,900 simulated seconds: one
  request per minute (limit 2) and at most 30 per 24 h, anchored or rolling (86,400 / 30 =
  2,880 <= 2,900), so every request is granted. A real clock cannot give this workload: 10,000
  Pro accounts may be granted at most 20,000 requests a minute in total, and a 31 s step (say)
  would exhaust the 30-a-day limit after 30 sweeps. ``limits`` reads ``time.time()`` from its
  ``limits.storage.memory`` module, so for this workload that module's ``time`` is swapped for
  the same simulated clock (its expiry timer thread then sees the same time too).
* ``mostly denied``: the real clock, as in production: allowance with no ``clock=`` (the store
  reads its own clock), ``limits`` with ``time.time()``. Before measuring, each account makes one
  request for 2 units, so its per-minute limit is full for the next 60 s and every measured
  request is denied (by allowance after checking both limits and working out the retry time
  and upgrade offer). Hence ``--seconds`` is capped so a measurement ends inside that minute.
  Like a caller that only gates on the answer, the benchmark reads ``Decision.allowed`` only.

Each measurement: untimed setup (accounts, then one sweep for "mostly granted" so every
account has its counters, or the prefill for "mostly denied"; for SQLite this runs through a
``synchronous=normal`` connection, since the stored state does not depend on it), a short
warm-up, a throughput pass and a latency pass, each of about ``--seconds``. Throughput comes
from the throughput pass: a plain loop that reads the wall clock once per chunk of CHUNK calls,
so no per-call timing overhead is counted (time.perf_counter_ns around each call adds roughly
0.1 µs, a few percent of a memory decision). p50/p99 come from the latency pass, which wraps
every call in ``time.perf_counter_ns``. Both passes call each contender through a small Python
closure (the same harness overhead for a contender and its baseline). The garbage collector
stays on, as in production; ``gc.collect()`` runs before each measurement.

Usage: ``python benchmarks/bench_decisions.py [--seconds S] [--quick] [--json] [--accounts N]``
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import operator
import platform
import sqlite3
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import limits.storage.memory
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from _table import aligned
from allowance import Limiter

FEATURE = "transform.virtual_model"
PLAN = "pro"
LIMITS_SPEC = "2/minute;30/day"  # the same two limits, in the ``limits`` notation
SIM_START = 1_800_000_000.0  # 2027-01-15 08:00 UTC; any epoch works
SWEEP_STEP = 2_900.0  # simulated seconds per sweep: >= 86,400 / 30 and >> 60
CHUNK = 256  # calls between two reads of the wall clock in the throughput pass
GRANTED = "mostly granted"
DENIED = "mostly denied"
WORKLOADS = (GRANTED, DENIED)
MAX_SECONDS = 20.0  # "mostly denied" must end inside the per-minute window it relies on
MEMORY_RATIO, MEMORY_AIM, MEMORY_FLOOR, SQLITE_RATIO = 1.5, 2.0, 100_000.0, 0.7

Op = Callable[[str], bool]  # one request for an account; True when granted


@dataclass
class Contender:
    """A prepared contender: ``op`` decides one request; ``tick`` (if any) starts a sweep."""

    op: Op
    tick: Callable[[], None] | None


@dataclass
class Result:
    name: str
    workload: str
    ops_per_s: float
    p50_us: float
    p99_us: float
    grant_ratio: float
    calls: int  # calls of the throughput pass
    timed_calls: int  # calls of the latency pass
    timed_ops_per_s: float  # throughput of the latency pass (includes the timing overhead)
    baseline: str | None = None
    ratio: float | None = None  # ops/s over the baseline's ops/s
    p50_ratio: float | None = None  # the baseline's p50 over this p50 (per-call speed)
    target: str | None = None
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


# --- clocks ---------------------------------------------------------------------------------


class SimTime:
    """Simulated epoch seconds. ``clock`` is a C-level callable (no Python frame per read), so
    reading it costs about what ``time.time()`` does; the driver moves it once per sweep."""

    def __init__(self, start: float = SIM_START) -> None:
        self._cell = [start]
        getter = functools.partial(operator.getitem, self._cell, 0)
        self.clock = cast(Callable[[], float], getter)

    def advance(self) -> None:
        self._cell[0] += SWEEP_STEP


@contextlib.contextmanager
def limits_time(clock: Callable[[], float] | None) -> Iterator[None]:
    """Make ``limits``' memory storage read ``clock`` instead of ``time.time`` (None: as is)."""
    module: Any = limits.storage.memory
    real = module.time
    if clock is not None:
        module.time = types.SimpleNamespace(time=clock)
    try:
        yield
    finally:
        module.time = real


# --- the driver -----------------------------------------------------------------------------


class Cursor:
    """Where the round-robin is: passes continue the sweep where the previous one stopped."""

    def __init__(self, chunks: list[list[str]], tick: Callable[[], None] | None) -> None:
        self.chunks = chunks
        self.tick = tick
        self.index = 0

    def next_chunk(self) -> list[str]:
        if self.index == 0 and self.tick is not None:
            self.tick()
        chunk = self.chunks[self.index]
        self.index = (self.index + 1) % len(self.chunks)
        return chunk


def run_plain(op: Op, cursor: Cursor, seconds: float) -> tuple[int, int, float]:
    """Calls ``op`` for about ``seconds`` (at least one chunk): (calls, granted, elapsed)."""
    perf = time.perf_counter
    calls = granted = 0
    start = perf()
    deadline = start + seconds
    while True:
        chunk = cursor.next_chunk()
        for key in chunk:
            granted += op(key)
        calls += len(chunk)
        now = perf()
        if now >= deadline:
            return calls, granted, now - start


def run_timed(op: Op, cursor: Cursor, seconds: float) -> tuple[list[int], int, float]:
    """Like ``run_plain`` but times every call: (latencies in ns, granted, elapsed)."""
    perf = time.perf_counter
    clock_ns = time.perf_counter_ns
    latencies: list[int] = []
    record = latencies.append
    granted = 0
    start = perf()
    deadline = start + seconds
    while True:
        for key in cursor.next_chunk():
            t0 = clock_ns()
            ok = op(key)
            t1 = clock_ns()
            record(t1 - t0)
            granted += ok
        now = perf()
        if now >= deadline:
            return latencies, granted, now - start


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in µs."""
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[min(rank, len(sorted_ns)) - 1] / 1000.0


def measure(
    name: str, workload: str, contender: Contender, keys: list[str], seconds: float, warmup: float
) -> Result:
    chunks = [keys[i : i + CHUNK] for i in range(0, len(keys), CHUNK)]
    cursor = Cursor(chunks, contender.tick)
    gc.collect()
    run_plain(contender.op, cursor, warmup)
    calls, granted, elapsed = run_plain(contender.op, cursor, seconds)
    latencies, timed_granted, timed_elapsed = run_timed(contender.op, cursor, seconds)
    latencies.sort()
    result = Result(
        name=name,
        workload=workload,
        ops_per_s=calls / elapsed,
        p50_us=percentile(latencies, 0.50),
        p99_us=percentile(latencies, 0.99),
        grant_ratio=(granted + timed_granted) / (calls + len(latencies)),
        calls=calls,
        timed_calls=len(latencies),
        timed_ops_per_s=len(latencies) / timed_elapsed,
    )
    log(
        f"  {name:<36} {workload:<15} {result.ops_per_s:>11,.0f}/s "
        f"granted {result.grant_ratio:6.1%}"
    )
    return result


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- contenders -----------------------------------------------------------------------------


def allowance_op(lim: Limiter) -> Op:
    consume = lim.consume

    def op(account: str) -> bool:
        return consume(account, FEATURE).allowed

    return op


def prepare_allowance(lim: Limiter, keys: list[str], workload: str, sim: SimTime) -> None:
    """Accounts, then the untimed setup of the workload (see the module docstring)."""
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
def allowance_memory(keys: list[str], workload: str) -> Iterator[Contender]:
    sim = SimTime()
    # "mostly granted": the simulated clock; "mostly denied": none, the store reads its own
    with Limiter(store="memory://", clock=sim.clock if workload == GRANTED else None) as lim:
        prepare_allowance(lim, keys, workload, sim)
        yield Contender(allowance_op(lim), sim.advance if workload == GRANTED else None)


@contextlib.contextmanager
def allowance_sqlite(keys: list[str], workload: str, sync: str, tmp: Path) -> Iterator[Contender]:
    sim = SimTime()
    clock = sim.clock if workload == GRANTED else None
    path = tmp / f"allowance-{workload.split()[1]}-{sync.lower()}.db"
    # the state is built through a synchronous=normal connection (fast; the file is the same)
    with Limiter(store=f"sqlite:///{path}?synchronous=normal", clock=clock) as setup:
        prepare_allowance(setup, keys, workload, sim)
    # FULL is the store's default: its URL takes no option
    url = f"sqlite:///{path}" if sync == "FULL" else f"sqlite:///{path}?synchronous={sync.lower()}"
    with Limiter(store=url, clock=clock) as lim:
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


# --- the run --------------------------------------------------------------------------------


def run(keys: list[str], seconds: float, warmup: float, tmp: Path) -> list[Result]:
    results: list[Result] = []

    def add(
        name: str,
        workload: str,
        make: contextlib.AbstractContextManager[Contender],
        baseline: Result | None = None,
    ) -> Result:
        with make as contender:
            result = measure(name, workload, contender, keys, seconds, warmup)
        if baseline is not None:
            result.baseline = baseline.name
            result.ratio = result.ops_per_s / baseline.ops_per_s
            result.p50_ratio = baseline.p50_us / result.p50_us
        results.append(result)
        return result

    for workload in WORKLOADS:
        log(f"{workload}:")
        tag = workload.split()[1]
        base = add("limits MovingWindow memory", workload, limits_memory(keys, workload))
        mem = add("allowance memory://", workload, allowance_memory(keys, workload), base)
        mem.target = f"≥{MEMORY_RATIO}× limits, ≥{MEMORY_FLOOR / 1000:.0f}k/s"
        mem.met = mem.ratio is not None and mem.ratio >= MEMORY_RATIO
        mem.met = mem.met and mem.ops_per_s >= MEMORY_FLOOR
        for sync in ("FULL", "NORMAL"):
            base = add(f"bare upsert sync={sync}", workload, bare_upsert(keys, sync, tmp, tag))
            label = f"allowance sqlite sync={sync}" + (" (default)" if sync == "FULL" else "")
            row = add(label, workload, allowance_sqlite(keys, workload, sync, tmp), base)
            row.target = f"≥{SQLITE_RATIO}× upsert"
            row.met = row.ratio is not None and row.ratio >= SQLITE_RATIO
    for result in results:  # a workload that is not what it claims to be is not a measurement
        if result.workload == GRANTED and result.grant_ratio < 0.95:
            result.notes.append("INVALID: expected nearly all granted")
        if result.workload == DENIED and "upsert" not in result.name and result.grant_ratio > 0.05:
            result.notes.append("INVALID: expected nearly all denied")
    return results


def ratio_text(result: Result) -> str:
    if result.ratio is None or result.baseline is None:
        return "(baseline)"
    short = "limits" if result.baseline.startswith("limits") else "upsert"
    return f"{result.ratio:.2f}× {short}"


def table(results: list[Result]) -> str:
    header = (
        "store / baseline",
        "workload",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "granted",
        "vs baseline",
        "p50 ratio",
        "target",
        "met",
    )
    rows = [
        (
            r.name,
            r.workload,
            f"{r.ops_per_s:,.0f}",
            f"{r.p50_us:.1f}",
            f"{r.p99_us:.1f}",
            "n/a" if r.name.startswith("bare upsert") else f"{r.grant_ratio:.1%}",
            ratio_text(r),
            "" if r.p50_ratio is None else f"{r.p50_ratio:.2f}×",
            r.target or "",
            "" if r.met is None else ("yes" if r.met else "NO"),
        )
        for r in results
    ]
    return aligned(header, rows, {2, 3, 4, 5, 6, 7}, [r.workload for r in results])


def targets(results: list[Result]) -> list[str]:
    by = {(r.name.removesuffix(" (default)"), r.workload): r for r in results}
    out = [
        f"memory ≥ {MEMORY_RATIO}× limits (aim {MEMORY_AIM}×) and ≥ {MEMORY_FLOOR:,.0f} "
        "decisions/s in one thread:"
    ]
    for workload in WORKLOADS:
        r = by["allowance memory://", workload]
        ratio = r.ratio or 0.0
        aim = "aim met" if ratio >= MEMORY_AIM else "aim not met"
        out.append(
            f"  {workload:<15} {ratio:.2f}× limits, {r.ops_per_s:,.0f}/s -> "
            f"{'met' if r.met else 'MISSED'} ({aim})"
        )
    out.append(f"SQLite ≥ {SQLITE_RATIO}× the bare upsert at the same synchronous level:")
    for sync in ("FULL", "NORMAL"):
        for workload in WORKLOADS:
            r = by[f"allowance sqlite sync={sync}", workload]
            out.append(
                f"  sync={sync:<6} {workload:<15} {r.ratio or 0.0:.2f}× upsert -> "
                f"{'met' if r.met else 'MISSED'}"
            )
    return out


def environment(
    args: argparse.Namespace, seconds: float, warmup: float, tmp: Path
) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "allowance": metadata.version("allowance"),
        "limits": metadata.version("limits"),
        "sqlite": sqlite3.sqlite_version,
        "accounts": args.accounts,
        "feature": FEATURE,
        "plan": PLAN,
        "seconds_per_pass": seconds,
        "warmup_seconds": warmup,
        "sweep_step_simulated_s": SWEEP_STEP,
        "tmpdir": str(tmp),
    }


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
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (default 10,000)")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 2.0
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(
            f"--seconds must be in (0, {MAX_SECONDS:g}]: 'mostly denied' relies on a "
            "per-minute window filled just before each measurement"
        )
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seconds: float = args.seconds
    warmup = min(0.5, max(0.05, seconds / 4))
    keys = [f"acct-{i:05d}" for i in range(args.accounts)]
    with tempfile.TemporaryDirectory(prefix="allowance-bench-") as tmpdir:
        tmp = Path(tmpdir)
        env = environment(args, seconds, warmup, tmp)
        log(
            f"bench_decisions: {args.accounts:,} accounts, {seconds:g} s per pass, "
            f"warm-up {warmup:g} s, SQLite files in {tmp}"
        )
        results = run(keys, seconds, warmup, tmp)
    invalid = [r for r in results if r.notes]
    if args.json:
        print(
            json.dumps(
                {
                    "environment": env,
                    "results": [asdict(r) for r in results],
                    "targets": targets(results),
                },
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        print(
            f"allowance {env['allowance']} vs limits {env['limits']}, Python {env['python']}, "
            f"SQLite {env['sqlite']}, {env['platform']}"
        )
        print(
            f"{FEATURE} on {PLAN} (2/min sliding + 30/24 h anchored), {args.accounts:,} accounts "
            f"round-robin, one thread; {seconds:g} s throughput pass + {seconds:g} s latency "
            f"pass per row (warm-up {warmup:g} s)"
        )
        print()
        print(table(results))
        print()
        print("Targets (issue):")
        print("\n".join(targets(results)))
        for r in invalid:
            print(f"{r.name} / {r.workload}: {'; '.join(r.notes)}")
    return 2 if invalid else 0


if __name__ == "__main__":
    sys.exit(main())
