"""AsyncLimiter on every store: the same answers as Limiter, through the stores' async drivers
where they have one (Redis and Redis Cluster: redis.asyncio; PostgreSQL: psycopg's
AsyncConnectionPool)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from allowance import (
    AsyncLimiter,
    IdempotencyConflict,
    ManualClock,
    ReservationExpired,
    ReservationNotFound,
    UnknownAccount,
)


def test_seed_example_and_meters(store_url: str, clock: ManualClock) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=store_url, clock=clock) as lim:
            await lim.set_account("acme", plan="pro")
            for _ in range(15):
                assert (await lim.consume("acme", "transform.virtual_model", 2)).allowed
                clock.advance(60)
            d = await lim.consume("acme", "transform.product_staging")
            assert (d.allowed, d.limit) == (False, "transform_daily")
            assert d.resets_at == datetime(2026, 11, 24, 15, 10, tzinfo=UTC)
            assert not (await lim.check("acme", "transform.virtual_model")).allowed
            daily = {m.limit: m for m in await lim.usage("acme")}["transform_daily"]
            assert (daily.used, daily.remaining) == (30, 0)
            assert (await lim.get_account("acme")).plan == "pro"
            with pytest.raises(UnknownAccount):
                await lim.consume("ghost", "export.ai")

    asyncio.run(main())


def test_reservations_and_keys(store_url: str, clock: ManualClock) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=store_url, clock=clock) as lim:
            await lim.set_account("a", plan="free")
            r = await lim.reserve("a", "background.studio", 2999, ttl=60)
            assert r.id is not None and r.decision.remaining == 1
            assert not (await lim.consume("a", "background.studio", 2)).allowed
            await r.release()
            kept = await lim.reserve("a", "background.studio", 10, ttl=60)
            await kept.commit()
            lost = await lim.reserve("a", "background.studio", 5, ttl=60)
            clock.advance(61)
            with pytest.raises(ReservationExpired):
                await lost.commit()
            with pytest.raises(ReservationNotFound):
                await lim.commit("not-an-id")
            studio = {m.limit: m.used for m in await lim.usage("a")}["studio"]
            assert studio == 10
            first = await lim.consume("a", "export.ai", 2, idempotency_key="k")
            assert await lim.consume("a", "export.ai", 2, idempotency_key="k") == first
            with pytest.raises(IdempotencyConflict):
                await lim.consume("a", "export.ai", 1, idempotency_key="k")
            assert {m.limit: m.used for m in await lim.usage("a")}["ai_exports"] == 2

    asyncio.run(main())


def test_concurrent_coroutines_grant_exactly_the_cap(store_url: str) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=store_url) as lim:
            await lim.set_account("acme", plan="pro")
            decisions = await asyncio.gather(*(lim.consume("acme", "export.ai") for _ in range(80)))
            assert sum(d.granted for d in decisions) == 30
            assert sum(not d.allowed for d in decisions) == 50
            meter = {m.limit: m.used for m in await lim.usage("acme")}
            assert meter["ai_exports"] == 30

    asyncio.run(main())
