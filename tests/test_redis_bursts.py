"""Ordinary bursts on Redis answer every call, as SQLite and PostgreSQL do: more concurrent
async decisions than connections wait for one instead of failing ("Too many connections"),
and many writers of one account do not give up on their optimistic retries."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from allowance import AsyncLimiter, Limiter, Meter
from conftest import STORE_FACTORIES

KINDS = ["redis", "redis_cluster"]
FEATURE, LIMIT = "background.studio", "studio"  # 4,000 a day on Pro


def _used(usage: list[Meter]) -> int:
    return {m.limit: m.used for m in usage}[LIMIT]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_async_burst_on_one_account_all_answer(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, idempotent: bool
) -> None:
    """150 concurrent consumes (more than the 100 connections of a server's Lanes), or 120
    idempotent ones (the load/apply path) on one account: every one granted, each charged
    once."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    calls = 120 if idempotent else 150

    async def main() -> int:
        async with AsyncLimiter(store=url) as lim:
            await lim.set_account("acme", plan="pro")
            decisions = await asyncio.gather(
                *(
                    lim.consume("acme", FEATURE, idempotency_key=f"k{i}" if idempotent else None)
                    for i in range(calls)
                )
            )
            assert all(d.allowed for d in decisions)
            return _used(await lim.usage("acme"))

    assert asyncio.run(main()) == calls


def test_a_burst_beyond_the_connection_limit_waits_for_a_connection(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With ``max_connections=4``, 200 concurrent decisions over many accounts share 4."""
    url = STORE_FACTORIES["redis"](request, tmp_path) + "&max_connections=4"

    async def main() -> None:
        async with AsyncLimiter(store=url) as lim:
            for i in range(20):
                await lim.set_account(f"a{i}", plan="pro")
            decisions = await asyncio.gather(
                *(lim.consume(f"a{i % 20}", FEATURE) for i in range(200))
            )
            assert all(d.allowed for d in decisions)
            lanes = lim.async_store._lanes[None]  # type: ignore[union-attr]
            assert lanes._open <= 4
            for i in range(20):
                assert _used(await lim.usage(f"a{i}")) == 10

    asyncio.run(main())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_threads_on_one_account_all_answer(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, idempotent: bool
) -> None:
    """64 threads, 5 consumes each, all on one account, through one Limiter."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    threads, each = 64, 5
    errors: list[BaseException] = []
    granted = [0] * threads
    # One process serialises its writers of one account (the slow path's lock): the last of
    # 320 idempotent calls queued at once waits for all before it, ~0.2 s on an idle
    # machine, past the default 0.5 s now and then on a loaded CI one (it failed so twice).
    # That wait is the bound left (docs/guarantees.md); this test is about none of them
    # failing on lost races or pool exhaustion, so it gives the queue 1 s.
    with Limiter(store=url, timeout=1.0) as lim:
        lim.set_account("acme", plan="pro")
        start = threading.Barrier(threads)

        def work(n: int) -> None:
            start.wait()
            for i in range(each):
                key = f"k{n}.{i}" if idempotent else None
                try:
                    granted[n] += lim.consume("acme", FEATURE, idempotency_key=key).granted
                except BaseException as exc:
                    errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors[:3]
        assert sum(granted) == threads * each == _used(lim.usage("acme"))


@pytest.mark.parametrize("kind", KINDS)
def test_writers_of_other_processes_and_one_step_decisions_do_not_make_retries_give_up(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """Four Limiters (as four app servers: each serialises only its own writers) with 16
    threads each, idempotent consumes on one account mixed with plain ones (which bump the
    account's version too): the losers of each race retry after a random pause, and all
    answer within the timeout."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    limiters = [Limiter(store=url) for _ in range(4)]
    threads, each = 16, 5
    errors: list[BaseException] = []
    granted = [0] * (threads * len(limiters))
    try:
        limiters[0].set_account("acme", plan="pro")
        start = threading.Barrier(len(granted))

        def work(n: int) -> None:
            lim = limiters[n % len(limiters)]
            start.wait()
            for i in range(each):
                key = f"k{n}.{i}" if (n + i) % 2 else None
                try:
                    granted[n] += lim.consume("acme", FEATURE, idempotency_key=key).granted
                except BaseException as exc:
                    errors.append(exc)

        workers = [threading.Thread(target=work, args=(n,)) for n in range(len(granted))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors, errors[:3]
        assert sum(granted) == len(granted) * each == _used(limiters[0].usage("acme"))
    finally:
        for lim in limiters:
            lim.close()
