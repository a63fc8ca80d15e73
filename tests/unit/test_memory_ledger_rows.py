"""memory:// keeps every ledger row in the process: as plain tuples the garbage collector stops
visiting once it has seen them. An object per row (or a tuple holding a dict) is visited at
every collection: 6.0 us of collection per decision against 2.8 as tuples (30,000
decisions)."""

from __future__ import annotations

import gc

from allowance import Limiter, ManualClock, builtin_policy

FEATURE = "transform.virtual_model"


def test_kept_rows_are_not_visited_by_the_collector_and_read_back_whole() -> None:
    clock = ManualClock(1_800_000_000.0)
    limiter = Limiter(builtin_policy(), "memory://", clock=clock)
    limiter.set_account("acme", plan="pro")
    limiter.consume("acme", FEATURE, idempotency_key="k1", user="ann")
    limiter.reserve("acme", FEATURE).commit()
    gc.collect()
    kept = limiter.store._ledger["acme"]  # type: ignore[attr-defined]
    charges = [k for k in kept if k[2] == "charge" and k[10] is None]
    assert charges and not any(gc.is_tracked(k) for k in charges)
    rows = limiter.ledger("acme").rows
    assert [(r.kind, r.idempotency_key, r.user, r.data) for r in rows[:2]] == [
        ("charge", "k1", "ann", {}),
        ("charge", "k1", "ann", {}),
    ]
    assert rows[2].kind == "charge" and "reservation" in rows[2].data
    assert {r.limit for r in rows[:2]} == {"transform_rate", "transform_daily"}
