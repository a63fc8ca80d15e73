"""The service's periodic cleanup: every ``interval`` seconds, ``AsyncLimiter.sweep()`` (which
deletes in short batches until nothing expired is left, see ``stores/upkeep.py``). Each worker
runs its own; sweeps of several processes skip what another holds, never wait on it."""

from __future__ import annotations

import asyncio
import logging

from allowance.aio import AsyncLimiter
from allowance.errors import AllowanceError

log = logging.getLogger("allowance.http")


async def _sweep_every(limiter: AsyncLimiter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            removed = await limiter.sweep()
        except AllowanceError as exc:  # the store is down: the next round tries again
            log.warning("allowance: periodic sweep failed: %s", exc)
            continue
        if removed:
            log.info("allowance: sweep removed %d expired records", removed)


def start_sweeping(limiter: AsyncLimiter, interval: float) -> asyncio.Task[None] | None:
    """The sweeping task (cancel it at shutdown), or None when ``interval`` is 0 (off)."""
    if interval <= 0:
        return None
    return asyncio.create_task(_sweep_every(limiter, interval), name="allowance-sweep")
