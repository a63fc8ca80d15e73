"""Cleanup that keeps up with any write rate, shared by the stores.

Every ``SWEEP_EVERY`` operations a store deletes up to ``SWEEP_BATCH`` expired idempotency
records and as many settled reservations. An operation adds at most one of each, and the batch
is twice the interval, so cleanup removes more than the writes add, however fast they come;
each batch is its own short transaction, so no lock is held long. A full ``sweep()`` repeats
batches until nothing expired is left.

Counters: a decision drops its account's counters whose windows have closed, but an account
nobody uses keeps them. The sweep also walks the accounts (a batch at a time, from where the
last batch stopped) and drops counters whose window has fully passed: ``Window.expires_at``,
which is the end of the anchored window, the last sliding entry plus the window's length, and
the end of the calendar period the units belong to -- so a counter of a later period than
``now`` (a clock that stepped back) is kept. Counters of limits the policy does not know are
kept too: a sweep run under another policy (``allowance sweep`` without ``--policy``) must not
throw away what it cannot judge.
"""

from __future__ import annotations

from typing import Any

from allowance.policy import Policy
from allowance.state import Counter
from allowance.windows import KEEP_AFTER

SWEEP_EVERY = 512
SWEEP_BATCH = 2 * SWEEP_EVERY  # more than the operations in between can add
SWEEP_INTERVAL = 300.0  # seconds between the service's full sweeps (`serve --sweep-interval`)


def spent(policy: Policy, name: str, counter: Counter, now: float) -> bool:
    """True when ``counter`` of limit ``name`` holds nothing at ``now - KEEP_AFTER`` or later
    (a clock stepping back that far still finds what it counts)."""
    limit = policy.limits.get(name)
    if limit is None:
        return False
    expires = limit.window.expires_at(counter)
    return expires is None or expires + KEEP_AFTER <= now


def live_stored(policy: Policy, stored: dict[str, Any], now: float) -> dict[str, Any] | None:
    """Stored counters (``{limit: [start, used, entries]}``) without the spent ones, or None
    when none is spent (nothing to write)."""
    keep = {
        name: raw
        for name, raw in stored.items()
        if not spent(policy, name, Counter.stored(raw[0], raw[1], raw[2]), now)
    }
    return None if len(keep) == len(stored) else keep
