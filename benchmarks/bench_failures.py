"""What a decision costs when the store is down (CONTRACT section 7), next to same-run
baselines: the ``limits`` library's in-memory moving window ("2/minute;30/day") and a healthy
``allowance`` decision on ``memory://``.

Rows (``transform.virtual_model`` on Pro, one thread, one account):

* ``limits memory`` (baseline) and ``allowance memory://`` (healthy, granted);
* ``deny, breaker open``: a Redis store on a loopback port where nothing listens (a real
  refused connection); after three failures the breaker is open and each decision raises
  ``StoreUnavailable`` at once;
* ``allow, breaker open``: the same store with ``on_store_error="allow"``: each decision is a
  degraded grant put in the journal (sized so it never fills during the run).

Each row: a warm-up, a throughput pass (a plain loop, the clock read once per chunk) and a
latency pass (``perf_counter_ns`` around each call) of about ``--seconds`` each.

Usage: ``python benchmarks/bench_failures.py [--seconds S] [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from _table import aligned
from allowance import Limiter, ManualClock, StoreUnavailable
from allowance.resilience import Breaker

FEATURE = "transform.virtual_model"
CHUNK = 1000


@dataclass
class Row:
    name: str
    ops_per_s: float
    p50_us: float
    p99_us: float


def dead_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def measure(name: str, call: Callable[[], object], seconds: float) -> Row:
    for _ in range(CHUNK):  # warm-up
        call()
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(CHUNK):
            call()
        done += CHUNK
    rate = done / (time.perf_counter() - began)
    samples: list[int] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(CHUNK):
            t0 = time.perf_counter_ns()
            call()
            samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return Row(
        name,
        rate,
        samples[len(samples) // 2] / 1000,
        samples[int(len(samples) * 0.99)] / 1000,
    )


def limits_call() -> Callable[[], object]:
    from limits import parse_many
    from limits.storage import MemoryStorage
    from limits.strategies import MovingWindowRateLimiter

    limiter = MovingWindowRateLimiter(MemoryStorage())
    rules = parse_many("2/minute;30/day")
    hit = limiter.hit
    return lambda: all(hit(rule, "acme") for rule in rules)


def healthy_call() -> Callable[[], object]:
    clock = ManualClock("2026-11-23T15:10:00Z")
    limiter = Limiter(None, "memory://", clock)
    limiter.set_account("acme", "pro")

    def call() -> object:
        clock.advance(2900)  # every request granted (see bench_decisions.py)
        return limiter.consume("acme", FEATURE)

    return call


def down_limiter(mode: str) -> Limiter:
    url = f"redis://127.0.0.1:{dead_port()}/0"
    limiter = Limiter(
        None,
        url,
        ManualClock("2026-11-23T15:10:00Z"),
        on_store_error=mode,  # type: ignore[arg-type]
        journal_size=10_000_000,
    )
    # a long cooldown: no probe (a real connection attempt) lands inside the measurement
    limiter.guard.breaker = Breaker(first_cooldown=3600.0, max_cooldown=3600.0)
    for _ in range(limiter.guard.breaker.failures_to_open):
        with contextlib.suppress(StoreUnavailable):
            limiter.consume("acme", FEATURE)
    assert limiter.guard.breaker.is_open
    return limiter


def deny_call() -> Callable[[], object]:
    limiter = down_limiter("deny")

    def call() -> object:
        try:
            return limiter.consume("acme", FEATURE)
        except StoreUnavailable as exc:
            return exc

    return call


def allow_call() -> Callable[[], object]:
    limiter = down_limiter("allow")
    return lambda: limiter.consume("acme", FEATURE).degraded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run (0.05 s passes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    seconds = 0.05 if args.quick else args.seconds
    subjects: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("limits memory (baseline)", limits_call),
        ("allowance memory:// healthy", healthy_call),
        ("deny, breaker open", deny_call),
        ("allow, breaker open (degraded)", allow_call),
    ]
    rows = [measure(name, make(), seconds) for name, make in subjects]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    base = rows[0].ops_per_s
    print(
        aligned(
            ("row", "ops/s", "x limits", "p50 us", "p99 us"),
            [
                (
                    r.name,
                    f"{r.ops_per_s:,.0f}",
                    f"{r.ops_per_s / base:.2f}",
                    f"{r.p50_us:.1f}",
                    f"{r.p99_us:.1f}",
                )
                for r in rows
            ],
            {1, 2, 3, 4},
            [0, 0, 1, 1],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
