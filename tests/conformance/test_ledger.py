"""The ledger (CONTRACT 8, ``ledger.py``) on every store: a row per counter changed by each
charge, release, commit and expiry, and a row per plan change, override, grant and billing
anchor, with the key id and the idempotency key; paging; a time range; retention; off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from allowance import InvalidRequest, Limiter, ManualClock, UnknownAccount, parse_policy
from allowance.ledger import KEEP, Row, acting_as
from allowance.types import to_datetime

GEN = "transform.virtual_model"  # Pro: 2 a minute (sliding), 30 a day (anchored 24 h)
LIMITS = ["transform_rate", "transform_daily"]


@pytest.fixture
def lim(limiter: Limiter) -> Iterator[Limiter]:
    limiter.set_account("acme", "pro")
    yield limiter


def rows(lim: Limiter, account: str = "acme") -> list[Row]:
    return list(lim.ledger_rows(account))


def brief(found: list[Row]) -> list[tuple[str, str | None, int]]:
    return [(r.kind, r.limit, r.amount) for r in found]


def test_a_charge_writes_a_row_per_limit_with_its_key_and_idempotency_key(
    lim: Limiter, clock: ManualClock
) -> None:
    with acting_as("key_123"):
        lim.consume("acme", GEN, idempotency_key="order-7")
        lim.consume("acme", GEN, idempotency_key="order-7")  # a retry: charged once
    clock.advance(61)
    lim.consume("acme", GEN, amount=2)  # the fast path on the one-step stores
    found = rows(lim)
    assert brief(found) == [
        ("charge", "transform_rate", 1),
        ("charge", "transform_daily", 1),
        ("charge", "transform_rate", 2),
        ("charge", "transform_daily", 2),
    ]
    first, _, third, _ = found
    assert first.account == "acme" and first.feature == GEN
    assert first.key_id == "key_123" and first.idempotency_key == "order-7"
    assert third.key_id is None and third.idempotency_key is None
    assert first.at == pytest.approx(clock() - 61) and third.at == pytest.approx(clock())
    assert first.user is None and first.data == {}


def test_a_denial_and_a_check_write_nothing(lim: Limiter, clock: ManualClock) -> None:
    assert lim.check("acme", GEN).allowed
    assert not lim.consume("acme", GEN, amount=3).allowed  # 2 a minute
    assert rows(lim) == []


def test_reservations_charge_then_commit_release_or_expire(
    lim: Limiter, clock: ManualClock
) -> None:
    committed = lim.reserve("acme", GEN)
    committed.commit()
    released = lim.reserve("acme", GEN)
    released.release()
    clock.advance(61)
    settled = lim.reserve("acme", GEN, amount=2)
    settled.commit(amount=1)
    clock.advance(61)
    lim.reserve("acme", GEN, ttl=10)
    clock.advance(11)
    lim.usage("acme")  # settles the expired hold
    found = rows(lim)
    per_rate = [(r.kind, r.amount) for r in found if r.limit == "transform_rate"]
    assert per_rate == [
        ("charge", 1),
        ("commit", 0),
        ("charge", 1),
        ("release", -1),
        ("charge", 2),
        ("commit", -1),
        ("charge", 1),
        ("expiry", -1),
    ]
    assert all(r.data["reservation"] for r in found)
    assert found[0].data["reservation"] == committed.id
    assert [r.data["amount"] for r in found if r.kind == "commit"] == [1, 1, 1, 1]
    daily = sum(r.amount for r in found if r.limit == "transform_daily")
    assert daily == next(m.used for m in lim.usage("acme") if m.limit == "transform_daily")


def test_terms_and_plan_changes_are_rows(lim: Limiter, clock: ManualClock) -> None:
    with acting_as("key_admin"):
        lim.set_override("acme", "transform_daily", max=50)
        lim.set_override("acme", "transform_daily", max=None)
        lim.grant("acme", "transform_daily", 10, expires_at=to_datetime(clock() + 3600))
        lim.set_account("acme", "max")
        lim.set_account("acme", "max", seats=3)
        lim.set_account("acme", "max", seats=3)  # no change: no row
        lim.set_account("acme", "max", seats=3, billing_anchor=to_datetime(clock()))
    found = rows(lim)
    assert [(r.kind, r.limit, r.amount) for r in found] == [
        ("override", "transform_daily", 50),
        ("override", "transform_daily", 0),
        ("grant", "transform_daily", 10),
        ("plan_change", None, 0),
        ("plan_change", None, 0),
        ("billing_anchor", None, 0),
    ]
    assert {r.key_id for r in found} == {"key_admin"}
    assert found[0].data == {"max": 50} and found[1].data == {"max": None}
    assert found[2].data["expires_at"].endswith("Z")
    assert found[3].data == {"from": "pro", "to": "max", "seats": 1}
    assert found[4].data == {"from": "max", "to": "max", "seats": 3}
    assert found[5].data["anchor"].endswith("Z")


def test_pages_follow_the_cursor_without_gaps_or_repeats(lim: Limiter, clock: ManualClock) -> None:
    for _ in range(7):
        clock.advance(61)
        lim.consume("acme", GEN)
    seen: list[Row] = []
    cursor = None
    pages = 0
    while True:
        page = lim.ledger("acme", cursor, limit=3)
        seen += page.rows
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 5 and len(seen) == 14  # 3 + 3 + 3 + 3 + 2
    assert len({r.cursor for r in seen}) == 14
    assert seen == rows(lim)
    assert lim.ledger("acme", limit=14).next_cursor is None


def test_a_time_range_picks_rows_from_since_up_to_until(lim: Limiter, clock: ManualClock) -> None:
    times = []
    for _ in range(4):
        clock.advance(61)
        times.append(clock())
        lim.consume("acme", GEN)
    since, until = to_datetime(times[1]), to_datetime(times[3])
    found = list(lim.ledger_rows("acme", since=since, until=until))
    assert [r.at for r in found] == pytest.approx([times[1]] * 2 + [times[2]] * 2)
    assert lim.ledger("acme", since=since, until=until, limit=1000).rows == found


def test_an_export_covers_every_account(lim: Limiter, clock: ManualClock) -> None:
    for name in ("b", "a", "c"):
        lim.set_account(name, "pro")
        lim.consume(name, GEN)
    found = list(lim.ledger_rows())
    assert [r.account for r in found] == ["a", "a", "b", "b", "c", "c"]


def test_rows_older_than_the_retention_are_swept(lim: Limiter, clock: ManualClock) -> None:
    lim.consume("acme", GEN)
    clock.advance(KEEP - 60)
    lim.consume("acme", GEN)
    lim.sweep()
    assert len(rows(lim)) == 4
    clock.advance(120)
    lim.sweep()
    assert [r.at for r in rows(lim)] == pytest.approx([clock() - 120] * 2)


def test_a_policy_with_the_ledger_off_writes_none(limiter: Limiter, clock: ManualClock) -> None:
    text = limiter.policy.source_text
    assert text is not None
    limiter.use_local_policy(parse_policy(text + "\nledger: false\n"))
    limiter.set_account("acme", "pro")
    limiter.consume("acme", GEN)
    limiter.reserve("acme", GEN).commit()
    limiter.set_override("acme", "transform_daily", max=5)
    assert rows(limiter) == []


def test_a_retention_of_the_policy_is_kept_to(limiter: Limiter, clock: ManualClock) -> None:
    text = limiter.policy.source_text
    assert text is not None
    limiter.use_local_policy(parse_policy(text + "\nledger: {keep: 2d}\n"))
    limiter.set_account("acme", "pro")
    limiter.consume("acme", GEN)
    assert len(rows(limiter)) == 2
    clock.advance(timedelta(days=2, minutes=1).total_seconds())
    limiter.sweep()
    assert rows(limiter) == []


def test_racing_charges_write_one_row_per_limit_each(lim: Limiter, clock: ManualClock) -> None:
    lim.set_account("acme", "max")  # Max: 5 a minute, 150 a day
    granted = []

    def run() -> None:
        for _ in range(10):
            granted.append(lim.consume("acme", GEN).granted)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    charges = [r for r in rows(lim) if r.kind == "charge"]
    assert sum(granted) >= 2
    assert sorted(brief(charges)) == sorted([("charge", n, 1) for n in LIMITS] * sum(granted))


def test_bad_arguments_are_named(lim: Limiter) -> None:
    for cursor in ("x", "-1", 5):
        with pytest.raises(InvalidRequest) as raised:
            lim.ledger("acme", cursor)  # type: ignore[arg-type]
        assert raised.value.field == "cursor"
    with pytest.raises(InvalidRequest) as raised:
        lim.ledger("acme", limit=0)
    assert raised.value.field == "limit"
    with pytest.raises(UnknownAccount):
        lim.ledger("nobody")


# credits and a limit counted per user: the rows a one-step kernel writes (no idempotency
# key) and those of the transaction path (a key) must be the same but for the key
PRICED = parse_policy(
    """\
version: 1
plans: [free, pro]
features:
  ai.generate: {title: AI generation}
limits:
  ai_credits:
    features: [ai.generate]
    costs: {ai.generate: 4}
    window: {type: calendar, unit: month}
    plans: {free: 20, pro: 400}
  member_generations:
    features: [ai.generate]
    scope: user
    window: {type: sliding, length: 60s}
    plans: {free: 2, pro: 50}
""",
    "priced",
)


def test_the_kernels_and_the_transaction_path_write_the_same_rows(
    store_url: str, clock: ManualClock
) -> None:
    with Limiter(PRICED, store=store_url, clock=clock) as lim:
        lim.set_account("space", "pro")
        with acting_as("key_app"):
            lim.consume("space", "ai.generate", 3, user="u1")  # a kernel, where there is one
            lim.consume("space", "ai.generate", 3, user="u1", idempotency_key="job-9")
        one_step, transaction = rows(lim, "space")[:2], rows(lim, "space")[2:]

    def fields(r: Row) -> tuple[object, ...]:
        return (r.at, r.kind, r.account, r.feature, r.limit, r.amount, r.key_id, r.user, r.data)

    assert [fields(r) for r in one_step] == [fields(r) for r in transaction]
    assert [(r.limit, r.amount) for r in one_step] == [
        ("ai_credits", 12),
        ("member_generations", 3),
    ]
    assert {r.user for r in one_step} == {"u1"} and {r.key_id for r in one_step} == {"key_app"}
    assert [r.idempotency_key for r in transaction] == ["job-9", "job-9"]
