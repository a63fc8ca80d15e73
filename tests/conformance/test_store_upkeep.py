"""Usage meters, persistence and cleanup on every store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

from allowance import AsyncLimiter, Limiter, ManualClock
from allowance.stores.postgres_common import render
from allowance.stores.redis_common import decode_counters


def test_usage_lists_every_limit_the_plan_has(limiter: Limiter) -> None:
    limiter.set_account("f", plan="free")
    limiter.set_account("p", plan="pro", seats=4)
    limiter.set_account("m", plan="max")
    assert [m.limit for m in limiter.usage("f")] == ["ai_exports", "exports", "studio"]
    pro = {m.limit: m for m in limiter.usage("p")}
    assert list(pro) == ["ai_exports", "exports", "transform_rate", "transform_daily", "studio"]
    assert pro["ai_exports"].max == 120 and pro["exports"].max is None
    assert all(m.used == 0 for m in pro.values())
    assert [m.limit for m in limiter.usage("m")][-1] == "studio_hd"


def test_sweep_removes_expired_records(limiter: Limiter, clock: ManualClock) -> None:
    limiter.set_account("a", plan="pro")
    limiter.consume("a", "export.ai", idempotency_key="k1")
    r = limiter.reserve("a", "background.studio", 3, ttl=60)
    limiter.reserve("a", "background.studio", 2, ttl=60)  # left to expire untouched
    r.commit()
    clock.advance(3 * 86400)
    removed = limiter.sweep()
    # in-process stores delete the three expired records here; Redis lets them expire by TTL
    # and only has the untouched reservation to settle
    assert removed >= (1 if limiter.store.scheme == "redis" else 3)
    assert limiter.sweep() == 0
    studio = next(m for m in limiter.usage("a") if m.limit == "studio")
    assert studio.used == 0


# --- cleanup keeps up with the writes (defect 7) -----------------------------------------------

DAY = 86400.0
PER_DAY = 1000  # idempotent operations a simulated day: more than one periodic batch removed
IDLE_KINDS = (  # one counter of every window kind, on a pro account
    "export.ai",  # anchored 7d
    "export.standard",  # calendar month
    "transform.virtual_model",  # sliding 60 s and anchored 24 h
    "background.studio",  # anchored 24 h
)


def _is_redis(limiter: Limiter) -> bool:
    return limiter.store.scheme.startswith("redis")


def idempotency_keys(limiter: Limiter) -> list[Any]:
    """The idempotency records the store holds, counted in the store itself."""
    store: Any = limiter.store
    scheme = store.scheme
    if scheme == "memory":
        return list(store._idempotency)
    if scheme == "sqlite":
        with sqlite3.connect(store.path) as conn:
            return list(conn.execute("SELECT account, key FROM idempotency").fetchall())
    if _is_redis(limiter):
        return list(store.client.scan_iter(match=f"{store.prefix}:*:i:*", count=1000))
    rows, _ = store.execute(render("SELECT account, key FROM {s}.idempotency", store.schema))
    return list(rows)


def counter_names(limiter: Limiter, account: str) -> set[str]:
    """The limits the store holds a counter of for ``account`` (Redis: its counters hash)."""
    store: Any = limiter.store
    scheme = store.scheme
    if scheme == "memory":
        return set(store._accounts[account].counters)
    if scheme == "sqlite":
        with sqlite3.connect(store.path) as conn:
            select = "SELECT counters FROM accounts WHERE id = ?"
            (raw,) = conn.execute(select, (account,)).fetchone()
        return set(json.loads(raw))
    if _is_redis(limiter):
        raw = store.client.get(store.key(account, "c"))
        return set() if raw is None else set(decode_counters(raw.decode()))
    rows, _ = store.execute(
        render("SELECT counters FROM {s}.accounts WHERE id = %s", store.schema), (account,)
    )
    return set(rows[0][0])


def redis_ttls(limiter: Limiter, pattern: str) -> list[int]:
    store: Any = limiter.store
    keys = list(store.client.scan_iter(match=f"{store.prefix}:{pattern}", count=1000))
    return [store.client.pttl(k) for k in keys]


def test_idempotency_records_stay_bounded_over_days(limiter: Limiter, clock: ManualClock) -> None:
    """A key on every operation, day after day: the store keeps about one day's records (they
    answer for 24 h), not an ever growing pile; idle accounts' spent counters go too."""
    limiter.set_account("busy", plan="max")
    for account in ("idle", "recent"):
        limiter.set_account(account, plan="pro")
    for feature in IDLE_KINDS:
        limiter.consume("idle", feature)
    kept = []
    n = 0
    for _day in range(4):
        for _ in range(PER_DAY):
            n += 1
            limiter.consume("busy", "export.standard", idempotency_key=f"op-{n}")
            clock.advance(DAY / PER_DAY)
        kept.append(len(idempotency_keys(limiter)))
    # past the idle account's longest window (the calendar month of START, then 7 days)
    clock.set("2026-12-02T00:00:00Z")
    limiter.consume("recent", "export.ai")  # a live counter: kept
    for _ in range(PER_DAY):
        n += 1
        limiter.consume("busy", "export.standard", idempotency_key=f"op-{n}")
        clock.advance(DAY / PER_DAY / 4)
    if _is_redis(limiter):
        # Redis expires records and counters by TTL on its own clock: every key has one
        ttls = redis_ttls(limiter, "*:i:*")
        assert len(ttls) == n and all(0 < t <= DAY * 1000 for t in ttls)
        assert all(t > 0 for t in redis_ttls(limiter, "*:c"))
        return
    assert max(kept) <= 1.6 * PER_DAY, kept  # one day's records and at most a batch more
    assert kept[-1] <= kept[1] + 10, kept  # flat from the second day on, not growing
    assert counter_names(limiter, "idle") == set()
    assert counter_names(limiter, "recent") == {"ai_exports"}


def test_sweep_reclaims_spent_counters_and_keeps_later_ones(
    limiter: Limiter, clock: ManualClock
) -> None:
    """sweep() drops the counters whose window has fully passed, for every window kind, and
    keeps a counter of a later period than now (written before the clock stepped back)."""
    for account in ("idle", "later", "live"):
        limiter.set_account(account, plan="pro")
    for feature in IDLE_KINDS:
        limiter.consume("idle", feature)
    clock.set("2026-12-02T00:00:00Z")  # every window of "idle" has passed
    limiter.consume("live", "transform.virtual_model")
    clock.set("2027-01-01T00:00:05Z")
    limiter.consume("later", "export.standard")  # January's counter
    clock.set("2026-12-02T00:00:30Z")  # the clock steps back into December
    limiter.sweep()
    if not _is_redis(limiter):  # Redis drops them by TTL, not by the limiter's clock
        assert counter_names(limiter, "idle") == set()
    assert counter_names(limiter, "later") == {"exports"}
    assert counter_names(limiter, "live") == {"transform_rate", "transform_daily"}
    assert limiter.sweep() == 0
    exports = next(m for m in limiter.usage("later") if m.limit == "exports")
    assert exports.used == 1  # still counted: a step back never grants it again


def test_async_stores_keep_up_and_reclaim_too(store_url: str, clock: ManualClock) -> None:
    """The same cleanup through ``AsyncLimiter`` (PostgreSQL has its own async store)."""

    async def main() -> None:
        async with AsyncLimiter(store=store_url, clock=clock) as lim:
            await lim.set_account("busy", plan="max")
            await lim.set_account("idle", plan="pro")
            for feature in IDLE_KINDS:
                await lim.consume("idle", feature)
            kept = []
            for day in range(2):
                for n in range(PER_DAY):
                    key = f"op-{day}-{n}"
                    await lim.consume("busy", "export.standard", idempotency_key=key)
                    clock.advance(DAY / PER_DAY)
                kept.append(len(idempotency_keys(lim.sync)))
            clock.set("2026-12-02T00:00:00Z")
            removed = await lim.sweep()
            if _is_redis(lim.sync):  # records and counters expire by TTL there
                return
            assert removed >= len(kept)
            assert max(kept) <= 1.6 * PER_DAY, kept
            assert idempotency_keys(lim.sync) == []
            assert counter_names(lim.sync, "idle") == set()
            assert await lim.sweep() == 0

    asyncio.run(main())
