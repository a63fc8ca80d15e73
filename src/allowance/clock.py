"""Time. The only module (with the stores' server-time reads) that looks at a real clock.

A clock is a zero-argument callable returning epoch seconds (float, UTC).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

from allowance.errors import ConfigurationError

Clock = Callable[[], float]

# the times a limiter accepts: after 1970 and before the year 9000, so that every window's
# bounds (a month ahead, in any time zone) stay inside what datetime can represent
MAX_TIME = 221_845_392_000.0  # 9000-01-01T00:00:00Z


def checked(value: object) -> float:
    """A clock's reading as epoch seconds; ``ConfigurationError`` for anything that is not a
    finite time in 1970..9000 (NaN, inf, a string, a year-9999 time)."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if isinstance(value, bool) or not 0.0 <= seconds < MAX_TIME:  # NaN fails both
        raise ConfigurationError(
            f"clock: returned {value!r}; expected epoch seconds between 1970 and the year 9000"
        )
    return seconds


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
