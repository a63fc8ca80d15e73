"""Scopes (CONTRACT section 9): a limit counts per account (``scope: account``, the default),
per user inside the account (``user``) or per user across every account (``user_global``).
One decision checks and charges every scope together; a request without ``user`` on a
feature counted per user is a validation error that changes nothing. On every store and
both request paths, sync and async. On Redis Cluster a user's counter across accounts is in
the user's hash slot, written under its own lock by the transaction path
(``redis_transaction.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from allowance import (
    AsyncLimiter,
    IdempotencyConflict,
    InvalidRequest,
    Limiter,
    LimitExceeded,
    ManualClock,
    load_policy,
)

from .support import Keys

FILE = Path(__file__).parents[1] / "scoped.yaml"
SCOPED = load_policy(FILE)
PATHS = pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    with Limiter(SCOPED, store=store_url, clock=clock) as limiter:
        limiter.set_account("space1", plan="free")
        limiter.set_account("space2", plan="free")
        yield limiter


def cluster(store_url: str) -> bool:
    return store_url.startswith("redis+cluster")


def test_on_redis_cluster_a_users_count_across_spaces_is_in_the_users_slot(
    lim: Limiter, store_url: str
) -> None:
    """Not in either space's slot: it is the user's, whichever space they work in (and its
    lock is gone once the decision is made)."""
    if not cluster(store_url):
        pytest.skip("only Redis Cluster keeps a user's counter in another hash slot")
    import redis.cluster

    store = lim.store
    assert lim.consume("space1", "export", user="ann").allowed
    assert lim.consume("space2", "export", user="ann").allowed
    key = store.owner_key("space1", "g:ann")  # type: ignore[attr-defined]
    assert key == store.owner_key("space2", "g:ann")  # type: ignore[attr-defined]
    host, port = store_url.split("//")[1].split("?")[0].split(":")
    with redis.cluster.RedisCluster(host=host, port=int(port)) as client:
        slot = client.keyslot(key)
        assert slot != client.keyslot(store.key("space1", "c"))  # type: ignore[attr-defined]
        assert b"exports_everywhere=" in client.get(key)
        assert not client.exists(key + ":lock")


def used(lim: Limiter, account: str, limit: str, user: str | None = None) -> int | None:
    return next((m.used for m in lim.usage(account, user=user) if m.limit == limit), None)


@PATHS
def test_each_user_of_a_space_has_its_own_counter_and_all_share_the_pool(
    lim: Limiter, keyed: bool
) -> None:
    key = Keys(keyed)
    for _ in range(4):
        assert lim.consume("space1", "ai.generate", user="ann", idempotency_key=key()).allowed
    d = lim.consume("space1", "ai.generate", user="ann", idempotency_key=key())
    assert (d.allowed, d.limit, d.remaining) == (False, "generations_per_user", 0)
    # another user of the space still has their own 4, but the space's 12 credits are shared
    assert lim.consume("space1", "ai.upscale", 2, user="bob", idempotency_key=key()).allowed
    d = lim.consume("space1", "ai.generate", 3, user="bob", idempotency_key=key())
    assert (d.allowed, d.limit) == (False, "space_credits")  # 4 + 6 used: 2 credits left
    assert lim.consume("space1", "ai.generate", 2, user="bob", idempotency_key=key()).allowed
    assert used(lim, "space1", "space_credits") == 12
    assert used(lim, "space1", "generations_per_user", "ann") == 4
    assert used(lim, "space1", "generations_per_user", "bob") == 2
    # the same user in another space counts there from nothing
    assert lim.consume("space2", "ai.generate", 4, user="ann").allowed


def test_a_users_denial_ends_when_the_users_window_does(lim: Limiter, clock: ManualClock) -> None:
    """The denial of a per-user limit lasts as long as the user's counter says, not the
    account's (memory:// once kept such a denial until the account's counters changed)."""
    for _ in range(4):
        assert lim.consume("space1", "ai.generate", user="ann").allowed
    denied = lim.consume("space1", "ai.generate", user="ann")
    assert (denied.allowed, denied.limit) == (False, "generations_per_user")
    assert denied.retry_after is not None
    clock.advance(denied.retry_after)
    assert lim.consume("space1", "ai.generate", user="ann").allowed


def test_meters_of_a_per_user_limit_are_a_users(lim: Limiter) -> None:
    lim.consume("space1", "ai.generate", 3, user="ann")
    names = [m.limit for m in lim.usage("space1")]
    assert "generations_per_user" not in names and "space_credits" in names
    assert used(lim, "space1", "generations_per_user", "ann") == 3
    assert used(lim, "space1", "generations_per_user", "cy") == 0


def test_a_request_without_its_user_is_refused_and_changes_nothing(lim: Limiter) -> None:
    with pytest.raises(InvalidRequest) as raised:
        lim.consume("space1", "ai.generate")
    assert raised.value.field == "user"
    assert "generations_per_user has scope: user" in str(raised.value)
    with pytest.raises(InvalidRequest):
        lim.check("space1", "ai.generate", 2)
    with pytest.raises(InvalidRequest):
        lim.reserve("space1", "ai.generate", ttl=60)
    assert used(lim, "space1", "space_credits") == 0


def test_a_key_reused_by_another_user_is_a_conflict_that_charges_nothing(lim: Limiter) -> None:
    """The first answer charged ann's counters: bob's retry under her key is another request
    (a replay would tell bob he was granted while nothing of his was counted)."""
    assert lim.consume("space1", "ai.generate", 2, user="ann", idempotency_key="k1").allowed
    with pytest.raises(IdempotencyConflict, match="user 'ann'"):
        lim.consume("space1", "ai.generate", 2, user="bob", idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        lim.reserve("space1", "ai.generate", 2, user="bob", idempotency_key="k1")
    assert used(lim, "space1", "generations_per_user", "bob") == 0
    assert used(lim, "space1", "space_credits") == 2
    again = lim.consume("space1", "ai.generate", 2, user="ann", idempotency_key="k1")
    assert again.allowed and used(lim, "space1", "generations_per_user", "ann") == 2


@PATHS
def test_a_user_global_limit_counts_a_user_across_spaces(
    lim: Limiter, store_url: str, keyed: bool
) -> None:
    key = Keys(keyed)
    assert lim.consume("space1", "export", 2, user="ann", idempotency_key=key()).allowed
    d = lim.consume("space1", "export", user="ann", idempotency_key=key())
    assert (d.allowed, d.limit) == (False, "exports_per_user")
    assert lim.consume("space2", "export", user="ann", idempotency_key=key()).allowed
    d = lim.consume("space2", "export", user="ann", idempotency_key=key())
    assert (d.allowed, d.limit, d.remaining) == (False, "exports_everywhere", 0)
    assert used(lim, "space2", "exports_everywhere", "ann") == 3
    assert used(lim, "space1", "exports_everywhere", "ann") == 3
    assert used(lim, "space2", "exports_per_user", "ann") == 1
    # another user is untouched, and a plan change of one space lifts only its limits
    assert lim.consume("space2", "export", 2, user="bob", idempotency_key=key()).allowed
    lim.set_account("space2", plan="pro")
    assert lim.consume("space2", "export", 3, user="ann", idempotency_key=key()).allowed
    assert used(lim, "space1", "exports_everywhere", "ann") == 6


def test_a_reservation_returns_its_units_to_its_users_counters(
    lim: Limiter, store_url: str
) -> None:
    r = lim.reserve("space1", "ai.generate", 3, ttl=60, user="ann")
    assert r.decision.allowed
    assert used(lim, "space1", "generations_per_user", "ann") == 3
    r.release()
    assert used(lim, "space1", "generations_per_user", "ann") == 0
    assert used(lim, "space1", "space_credits") == 0
    r = lim.reserve("space1", "ai.generate", 3, ttl=60, user="ann")
    r.commit(amount=1)
    assert used(lim, "space1", "generations_per_user", "ann") == 1
    assert used(lim, "space1", "space_credits") == 1
    r = lim.reserve("space2", "export", 2, ttl=60, user="ann")
    with pytest.raises(LimitExceeded):  # ann's 2 exports an hour in the space
        r.commit(amount=3)
    r.commit(amount=1)  # settled in ann's counters in this space and everywhere
    assert used(lim, "space2", "exports_per_user", "ann") == 1
    assert used(lim, "space1", "exports_everywhere", "ann") == 1


def test_an_expired_reservation_of_one_user_is_settled_by_anothers_request(
    lim: Limiter, clock: ManualClock
) -> None:
    lim.reserve("space1", "ai.generate", 4, ttl=30, user="ann")
    clock.advance(31)
    # bob's request settles ann's hold (the store reads ann's record in the same step)
    assert lim.consume("space1", "ai.generate", user="bob").allowed
    assert used(lim, "space1", "generations_per_user", "ann") == 0
    assert used(lim, "space1", "space_credits") == 1


def test_a_users_counters_are_kept_apart_from_the_account(lim: Limiter) -> None:
    """A space of many users: each user's counters live in a record of their own."""
    for n in range(50):
        assert lim.consume("space1", "ai.generate", user=f"u{n}", partial=True).allowed is (n < 12)
    assert used(lim, "space1", "space_credits") == 12
    assert [used(lim, "space1", "generations_per_user", f"u{n}") for n in (0, 11, 12)] == [
        1,
        1,
        0,
    ]


def test_async_scopes(store_url: str, clock: ManualClock) -> None:
    async def run() -> None:
        async with AsyncLimiter(SCOPED, store=store_url, clock=clock) as lim:
            await lim.set_account("space1", plan="free")
            await lim.set_account("space2", plan="free")
            for _ in range(4):
                assert (await lim.consume("space1", "ai.generate", user="ann")).allowed
            d = await lim.consume("space1", "ai.generate", user="ann")
            assert (d.allowed, d.limit) == (False, "generations_per_user")
            r = await lim.reserve("space1", "ai.generate", 2, ttl=30, user="bob")
            clock.advance(31)
            assert (await lim.consume("space1", "ai.generate", user="cy")).allowed
            meters = await lim.usage("space1", user="bob")
            assert next(m.used for m in meters if m.limit == "generations_per_user") == 0
            assert r.id is not None
            assert (await lim.consume("space1", "export", 2, user="ann")).allowed
            assert (await lim.consume("space2", "export", user="ann")).allowed
            d = await lim.consume("space2", "export", user="ann")
            assert (d.allowed, d.limit) == (False, "exports_everywhere")

    asyncio.run(run())


def test_racing_threads_across_spaces_grant_exactly_a_users_global_count(
    store_url: str, clock: ManualClock
) -> None:
    """Four spaces on Pro, 5 exports an hour each per user, 8 a day for the user everywhere:
    16 threads asking 40 times for one user grant exactly 8, however they interleave."""
    with Limiter(SCOPED, store=store_url, clock=clock) as lim:
        for n in range(4):
            lim.set_account(f"s{n}", plan="pro")
        with ThreadPoolExecutor(16) as pool:
            grants = list(
                pool.map(
                    lambda i: lim.consume(f"s{i % 4}", "export", user="ann").granted, range(40)
                )
            )
        assert sum(grants) == 8
        assert used(lim, "s0", "exports_everywhere", "ann") == 8
        assert sum(used(lim, f"s{n}", "exports_per_user", "ann") or 0 for n in range(4)) == 8
