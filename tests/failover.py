"""Decisions under a Redis failover (Sentinel, Cluster): a thread with a ``Limiter`` and an
event loop with an ``AsyncLimiter`` decide while a test fails the master over; ``under_load``
reports how long decisions failed and what was granted meanwhile, and checks the bounds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from allowance import AsyncLimiter, Limiter, StoreError


@dataclass
class Tally:
    """What a loop of decisions saw: grants, errors and when."""

    granted: int = 0
    calls: int = 0
    unsure: int = 0  # failed with maybe_applied: True (charged or not, nobody knows)
    errors: list[float] = field(default_factory=list)  # monotonic times of failed calls
    kinds: set[str] = field(default_factory=set)

    def failed(self, exc: StoreError, at: float) -> None:
        self.errors.append(at)
        self.unsure += bool(getattr(exc, "maybe_applied", True))
        self.kinds.add(f"{type(exc).__name__}: {str(exc)[:60]}")

    def window(self) -> float:
        return round(self.errors[-1] - self.errors[0], 2) if self.errors else 0.0


ACCOUNTS = [f"a{i}" for i in range(20)]
FEATURE = "export.standard"  # unlimited on Max: every decision grants


def _loop(url: str, stop: threading.Event, tally: Tally) -> None:
    with Limiter(store=url) as lim:
        while not stop.is_set():
            account = ACCOUNTS[tally.calls % len(ACCOUNTS)]
            tally.calls += 1
            try:
                tally.granted += lim.consume(account, FEATURE).granted
            except StoreError as exc:
                tally.failed(exc, time.monotonic())
            time.sleep(0.001)


def _async_loop(url: str, stop: threading.Event, tally: Tally) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=url) as lim:
            while not stop.is_set():

                async def one(account: str) -> None:
                    tally.calls += 1
                    try:
                        decision = await lim.consume(account, FEATURE)
                    except StoreError as exc:
                        tally.failed(exc, time.monotonic())
                    else:
                        tally.granted += decision.granted  # not "+= await": tasks interleave

                await asyncio.gather(*(one(a) for a in ACCOUNTS[:8]))
                await asyncio.sleep(0.002)

    asyncio.run(main())


def _meter(url: str) -> int:
    with Limiter(store=url) as lim:
        return sum({m.limit: m.used for m in lim.usage(account)}["exports"] for account in ACCOUNTS)


def under_load(
    url: str,
    fail: Callable[[], None],
    failed_over: Callable[[], bool],
    record_property: Callable[[str, object], None],
    *,
    after: float = 2.0,
    lost_at_most: int | None = None,
    **labels: Any,
) -> dict[str, Any]:
    """Run both loops on ``url`` (its ACCOUNTS on Max already), call ``fail`` after 1 s, wait
    until ``failed_over()`` (at most 30 s), decide ``after`` s more; print, record and return
    the figures. Bounds: no error in the last 0.5 s (decisions went on); nothing charged that nobody
    asked for; lost (granted, not on the meter) at most what the old master took until the
    switch (Redis replication is asynchronous), or ``lost_at_most``."""
    stop = threading.Event()
    tallies = {"sync": Tally(), "async": Tally()}
    loops = [
        threading.Thread(target=_loop, args=(url, stop, tallies["sync"])),
        threading.Thread(target=_async_loop, args=(url, stop, tallies["async"])),
    ]
    started = time.monotonic()
    for loop in loops:
        loop.start()
    try:
        time.sleep(1.0)
        began = time.monotonic()
        fail()
        while not failed_over():
            assert time.monotonic() - began < 30, "no failover within 30 s"
            time.sleep(0.05)
        switched = time.monotonic() - began
        time.sleep(after)  # decisions on the new master
    finally:
        stop.set()
        for loop in loops:
            loop.join(timeout=30)
    rate = sum(t.calls for t in tallies.values()) / (time.monotonic() - started)
    meter = _meter(url)
    granted = sum(t.granted for t in tallies.values())
    unsure = sum(t.unsure for t in tallies.values())
    report = {
        **labels,
        "new master known after s": round(switched, 2),
        **{
            f"{name}: calls / errors / error window s": (
                t.calls,
                len(t.errors),
                round(t.window(), 2),
            )
            for name, t in tallies.items()
        },
        "granted (clients saw)": granted,
        "meter": meter,
        "unsure (maybe applied)": unsure,
        "decisions/s": round(rate),
        "lost (granted but not on the meter)": max(0, granted - meter),
        "errors": sorted(set().union(*(t.kinds for t in tallies.values()))),
    }
    print(report)
    for name, value in report.items():
        record_property(name, value)
    for name, tally in tallies.items():
        assert tally.errors == [] or tally.errors[-1] < began + switched + after - 0.5, name
        assert tally.calls > 100, name
    assert meter <= granted + unsure  # nothing charged that nobody asked for
    assert granted - meter <= rate * (switched + 0.5)
    if lost_at_most is not None:
        assert granted - meter <= lost_at_most, report
    return report
