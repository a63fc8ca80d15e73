"""Simulated time for the decision benchmarks (``bench_decisions``, ``bench_stores``)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import cast

SIM_START = 1_800_000_000.0  # 2027-01-15 08:00 UTC; any epoch works
SWEEP_STEP = 2_900.0  # simulated seconds per sweep: >= 86,400 / 30 and >> 60


class SimTime:
    """Simulated epoch seconds. ``clock`` is a C-level callable (no Python frame per read), so
    reading it costs about what ``time.time()`` does; the driver moves it once per sweep."""

    def __init__(self, start: float = SIM_START) -> None:
        self._cell = [start]
        getter = functools.partial(operator.getitem, self._cell, 0)
        self.clock = cast(Callable[[], float], getter)

    def advance(self) -> None:
        self._cell[0] += SWEEP_STEP
