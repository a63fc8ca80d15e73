"""What every part of the decision benchmark shares: the constants of the workload, the result
records, the log, the simulated clock and the clock ``limits`` reads."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import limits.storage.memory

FEATURE = "transform.virtual_model"
PLAN = "pro"
LIMITS_SPEC = "2/minute;30/day"  # the same two limits, in the ``limits`` notation
CHUNK = 256  # calls between two reads of the wall clock in the throughput pass
GRANTED = "mostly granted"
DENIED = "mostly denied"
WORKLOADS = (GRANTED, DENIED)
MAX_SECONDS = 20.0  # "mostly denied" must end inside the per-minute window it relies on
MEMORY_RATIO, MEMORY_AIM, MEMORY_FLOOR, SQLITE_RATIO = 1.5, 2.0, 100_000.0, 0.7
EVENTS_RATIO = 0.8  # issue 13: the seed's decision with events and ledger on >= this x off

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


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- clocks ---------------------------------------------------------------------------------


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
