"""A clock that returns nonsense gets a ConfigurationError and charges nothing (issue 10,
defect 8): NaN and inf used to grant, a year-9999 time raised OverflowError."""

from __future__ import annotations

import asyncio
import math

import pytest

from allowance import AsyncLimiter, Limiter, ManualClock
from allowance.errors import ConfigurationError

BAD = [math.nan, math.inf, -math.inf, 253_402_300_000.0, -5.0, "soon", None, True]
START = "2026-11-23T15:10:00Z"


@pytest.mark.parametrize("reading", BAD, ids=repr)
def test_bad_clock_readings_are_refused(reading: object) -> None:
    good = ManualClock(START)
    readings = [reading]
    limiter = Limiter(clock=lambda: readings[0] if readings else good())  # type: ignore[arg-type, return-value]
    readings.clear()
    limiter.set_account("acme", "pro")
    readings.append(reading)
    for call in (
        lambda: limiter.consume("acme", "export.ai"),
        lambda: limiter.check("acme", "export.ai"),
        lambda: limiter.reserve("acme", "export.ai"),
        lambda: limiter.usage("acme"),
    ):
        with pytest.raises(ConfigurationError, match="clock: returned"):
            call()
    readings.clear()
    assert all(m.used == 0 for m in limiter.usage("acme"))


def test_async_limiter_refuses_them_too() -> None:
    async def scenario() -> None:
        limiter = AsyncLimiter(clock=lambda: math.nan)
        with pytest.raises(ConfigurationError):
            await limiter.consume("acme", "export.ai")

    asyncio.run(scenario())
