"""Load factors (CONTRACT section 9): ``set_load_factor(f, limits=None)`` lowers the effective
max to floor(max × seats × f) in decisions, meters, messages and the quota, is kept in the
store, and every Limiter on that store applies it within ``load.REFRESH``; on every store,
both decision paths, sync and async."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import pytest

from allowance import AsyncLimiter, InvalidRequest, Limiter, ManualClock, load
from allowance.stores import store_from_url


@pytest.fixture
def lim(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    with Limiter(store=store_url, clock=clock) as limiter:
        limiter.set_account("a", plan="pro", seats=3)  # ai_exports: 30 a week per seat = 90
        yield limiter


def meter(lim: Limiter, limit: str) -> tuple[int, int | None]:
    found = next(m for m in lim.usage("a") if m.limit == limit)
    return found.used, found.max


@pytest.mark.parametrize("keyed", [False, True], ids=["kernel", "transaction"])
def test_a_factor_lowers_the_max_everywhere_it_shows(lim: Limiter, keyed: bool) -> None:
    factors = lim.set_load_factor(0.33, ["ai_exports"])
    assert factors["ai_exports"] == 0.33 and factors["transform_daily"] == 1.0
    assert meter(lim, "ai_exports") == (0, 29)  # floor(90 × 0.33), not floor(30 × 0.33) × 3
    d = lim.consume("a", "export.ai", 40, partial=True, idempotency_key="k" if keyed else None)
    assert (d.granted, d.remaining) == (29, 0)
    d = lim.consume("a", "export.ai", idempotency_key="k2" if keyed else None)
    assert (d.allowed, d.reason, d.limit) == (False, "limit_reached", "ai_exports")
    assert "lowered from 90 while demand is high" in d.message
    assert d.quota is not None and d.quota.max == 29
    assert d.upgrade == "max"  # Max's 360 × 0.33 = 118 would grant it
    assert meter(lim, "transform_daily") == (0, 30)  # other limits untouched


def test_lifting_it_gives_the_full_max_back_and_keeps_the_usage(lim: Limiter) -> None:
    lim.set_load_factor(0.5)  # every limit
    assert meter(lim, "ai_exports") == (0, 45)
    assert meter(lim, "transform_daily") == (0, 15)
    assert lim.consume("a", "export.ai", 45).allowed
    assert not lim.consume("a", "export.ai").allowed
    assert lim.set_load_factor(1.0)["ai_exports"] == 1.0
    assert meter(lim, "ai_exports") == (45, 90)
    assert lim.consume("a", "export.ai", 45).allowed


def test_a_named_limit_wins_over_the_default_until_all_are_set(lim: Limiter) -> None:
    lim.set_load_factor(0.5)
    lim.set_load_factor(0.9, ["ai_exports"])
    assert (meter(lim, "ai_exports")[1], meter(lim, "transform_daily")[1]) == (81, 15)
    lim.set_load_factor(0.2)  # every limit again: the named one is dropped
    assert lim.load_factors() == {name: 0.2 for name in lim.policy.limits}


@pytest.mark.parametrize(
    ("factor", "limits", "field"),
    [
        (0, None, "factor"),
        (1.5, None, "factor"),
        (-0.1, None, "factor"),
        (math.nan, None, "factor"),
        (True, None, "factor"),
        ("0.5", None, "factor"),
        (0.5, ["nope"], "limits"),
        (0.5, [], "limits"),
        (0.5, "ai_exports", "limits"),
    ],
)
def test_a_bad_factor_is_refused_and_changes_nothing(
    lim: Limiter, factor: object, limits: object, field: str
) -> None:
    with pytest.raises(InvalidRequest) as err:
        lim.set_load_factor(factor, limits)  # type: ignore[arg-type]
    assert err.value.field == field
    assert set(lim.load_factors().values()) == {1.0}


def test_another_limiter_on_the_store_applies_it_within_the_refresh(
    store_url: str, lim: Limiter, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "REFRESH", 0.2)
    # a memory store is one process's: the other Limiter shares the object
    store = lim.store if store_url.startswith("memory") else store_from_url(store_url)
    with Limiter(store=store, clock=clock) as other:
        assert other.consume("a", "export.ai", 40).allowed  # reads the factors: none yet
        lim.set_load_factor(0.5, ["ai_exports"])
        time.sleep(0.25)
        d = other.consume("a", "export.ai", 10)
        assert (d.allowed, d.limit) == (False, "ai_exports")  # 40 + 10 > 45
        assert other.consume("a", "export.ai", 5).allowed


def test_an_async_limiter_applies_it(store_url: str, clock: ManualClock) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=store_url, clock=clock) as alim:
            await alim.set_account("a", plan="pro")
            factors = await alim.set_load_factor(0.5, ["ai_exports"])
            assert factors["ai_exports"] == 0.5
            d = await alim.consume("a", "export.ai", 20, partial=True)
            assert d.granted == 15
            assert not (await alim.consume("a", "export.ai")).allowed
            meters = {m.limit: m.max for m in await alim.usage("a")}
            assert meters["ai_exports"] == 15
            assert (await alim.load_factors())["ai_exports"] == 0.5

    asyncio.run(main())
