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

The code: this file reads the command line and prints; ``decisions/`` holds the rest
(``common``: constants, records, clocks; ``subjects``: the contenders and their baselines;
``measure``: passes, one measurement, the run; ``report``: the table, the targets, the
environment).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from decisions.common import FEATURE, MAX_SECONDS, PLAN, log
from decisions.measure import run
from decisions.report import environment, table, targets


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
