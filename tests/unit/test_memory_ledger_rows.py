"""memory:// keeps every ledger row in the process (``stores/memory_ledger.py``): as plain
tuples the garbage collector stops visiting once it has seen them, a charge as one tuple for
all of its rows. An object per row (or a tuple holding a dict) is visited at every
collection: 6.0 us of collection per decision against 2.8 as tuples (30,000 decisions)."""

from __future__ import annotations

import gc

from allowance import Limiter, ManualClock, builtin_policy
from allowance.stores.memory import MemoryStore

FEATURE = "transform.virtual_model"


def pro_account() -> tuple[Limiter, ManualClock]:
    clock = ManualClock(1_800_000_000.0)
    limiter = Limiter(builtin_policy(), "memory://", clock=clock)
    limiter.set_account("acme", plan="pro")
    return limiter, clock


def test_a_charge_is_kept_as_one_tuple_the_collector_does_not_visit() -> None:
    limiter, _ = pro_account()
    limiter.consume("acme", FEATURE, idempotency_key="k1", user="ann")
    limiter.reserve("acme", FEATURE).commit()
    gc.collect()
    store = limiter.store
    assert isinstance(store, MemoryStore)
    kept = store._ledger.kept["acme"]
    assert [k[2] for k in kept] == ["charge", "charge", "commit", "commit"]  # a charge: one
    assert not any(gc.is_tracked(k) for k in kept[:2])  # (a commit's holds its data: a dict)
    rows = limiter.ledger("acme").rows
    assert [(r.kind, r.idempotency_key, r.user, r.data) for r in rows[:2]] == [
        ("charge", "k1", "ann", {}),
        ("charge", "k1", "ann", {}),
    ]
    assert [r.kind for r in rows[2:]] == ["charge", "charge", "commit", "commit"]
    assert "reservation" in rows[2].data and rows[2].data == rows[3].data
    assert (
        {r.limit for r in rows[:2]}
        == {r.limit for r in rows[2:4]}
        == {
            "transform_rate",
            "transform_daily",
        }
    )
    assert [int(r.cursor) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_a_page_may_end_inside_a_charge_and_the_next_goes_on_from_there() -> None:
    limiter, clock = pro_account()
    for _ in range(3):
        clock.advance(61)
        assert limiter.consume("acme", FEATURE).allowed
    limiter.set_account("acme", plan="max")  # a row of its own between charges
    clock.advance(61)
    limiter.consume("acme", FEATURE)
    whole = limiter.ledger("acme", limit=100).rows
    assert len(whole) == 9
    for size in (1, 2, 3):
        paged, cursor = [], None
        while True:
            page = limiter.ledger("acme", cursor, limit=size)
            paged += page.rows
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == whole


def test_rows_past_retention_go_by_whole_charges_counted_in_rows() -> None:
    limiter, clock = pro_account()
    limiter.consume("acme", FEATURE)
    clock.advance(91 * 86400)  # past the default 90 days
    limiter.consume("acme", FEATURE)
    store = limiter.store
    assert isinstance(store, MemoryStore)
    assert store._ledger.drop("acme", clock() - 90 * 86400) == 2
    assert [r.cursor for r in limiter.ledger("acme").rows] == ["3", "4"]
