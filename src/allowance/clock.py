"""Time. The only module (with the stores' server-time reads) that looks at a real clock.

A clock is a zero-argument callable returning epoch seconds (float, UTC).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]


def system_clock() -> float:
    """This machine's clock: the time source of the in-process stores (memory, SQLite)."""
    return time.time()


def to_epoch(value: float | int | datetime | str) -> float:
    """Epoch seconds from a number, an aware datetime or an ISO 8601 string (naive = UTC)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class ManualClock:
    """A clock that moves only when told: for tests and ``allowance simulate``."""

    def __init__(self, start: float | int | datetime | str = 0.0) -> None:
        self._now = to_epoch(start)

    def __call__(self) -> float:
        return self._now

    def set(self, when: float | int | datetime | str) -> None:
        self._now = to_epoch(when)

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)


class FileClock:
    """Epoch seconds read from a file at each call: lets tests and demos move the clock of a
    running ``allowance serve`` (``ALLOWANCE_CLOCK_FILE``). Never for production."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self) -> float:
        with open(self.path) as f:
            return float(f.read())
