"""The PostgreSQL stores when the server fails: frozen (SIGSTOP of the postmaster and all its
backends), stopped (``pg_ctl stop -m immediate``) and restarted. Every decision (sync and async,
the one-statement fast path and the transaction path) ends within the timeout + 50 ms with a
``StoreUnavailable`` (well within it when the server refuses connections), and works again
within a few seconds once the server is back, however long it was away; connections the server
closed are replaced without failing a decision. Each test runs its own throwaway cluster."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import servers
from allowance import AsyncLimiter, Limiter
from allowance.errors import StoreUnavailable

pytestmark = pytest.mark.faults

TIMEOUT = 0.3
SLACK = 0.05  # the contract's bound: timeout + 50 ms
# a stopped server refuses connections: a caller learns it from the pool's attempt to connect
# (postgres_conn.REFUSED_WAIT, 50 ms) instead of waiting out its timeout
REFUSED_BOUND = 0.15


@pytest.fixture
def cluster() -> Iterator[servers.PostgresServer]:
    try:
        server = servers.start_postgres()
    except servers.ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.signal_all(signal.SIGCONT)  # a frozen cluster cannot be stopped
        server.stop()


def url_of(server: servers.PostgresServer, **options: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in options.items())
    return f"{server.url}?schema=t{uuid.uuid4().hex[:8]}&timeout={TIMEOUT}{extra}"


def decisions(lim: Limiter) -> dict[str, Callable[[], object]]:
    """One call per path: the fast path (plain check / consume) and the transaction path
    (an idempotency key)."""
    keys = iter(range(10**6))
    return {
        "fast check": lambda: lim.check("acme", "export.ai"),
        "fast consume": lambda: lim.consume("acme", "export.ai"),
        "transact": lambda: lim.consume("acme", "export.ai", idempotency_key=f"k{next(keys)}"),
    }


def async_decisions(alim: AsyncLimiter) -> dict[str, Callable[[], Awaitable[object]]]:
    keys = iter(range(10**6))
    return {
        "async fast check": lambda: alim.check("acme", "export.ai"),
        "async fast consume": lambda: alim.consume("acme", "export.ai"),
        "async transact": lambda: alim.consume(
            "acme", "export.ai", idempotency_key=f"a{next(keys)}"
        ),
    }


def assert_unavailable_fast(
    call: Callable[[], object], what: str, bound: float = TIMEOUT + SLACK
) -> None:
    began = time.monotonic()
    with pytest.raises(StoreUnavailable):
        call()
    took = time.monotonic() - began
    assert took <= bound, f"{what}: {took:.3f} s"


async def assert_unavailable_fast_async(
    call: Callable[[], Awaitable[object]], what: str, bound: float = TIMEOUT + SLACK
) -> None:
    began = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await call()
    took = time.monotonic() - began
    assert took <= bound, f"{what}: {took:.3f} s"


def run_async(limiter: AsyncLimiter, body: Callable[[AsyncLimiter], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        try:
            return await body(limiter)
        finally:
            await limiter.close()

    return asyncio.run(main())


def test_frozen_server_every_decision_fails_within_the_timeout(
    cluster: servers.PostgresServer,
) -> None:
    url = url_of(cluster)
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        calls = decisions(lim)
        for call in calls.values():
            call()  # each path warmed up: prepared, connected
        alim = AsyncLimiter(store=url)

        async def body(alim: AsyncLimiter) -> None:
            acalls = async_decisions(alim)
            for acall in acalls.values():
                await acall()
            cluster.signal_all(signal.SIGSTOP)
            try:
                for _ in range(2):  # on a kept connection, then with the pool exhausted
                    for what, acall in acalls.items():
                        await assert_unavailable_fast_async(acall, what)
                    for what, call in calls.items():
                        assert_unavailable_fast(call, what)
            finally:
                cluster.signal_all(signal.SIGCONT)
            # thawed: the connections that timed out were dropped, new ones work (once the
            # limiter's breaker, opened by the failures above, has probed the server)
            for what, acall in acalls.items():
                await until_it_works_async(acall, what, within=5.0)
            for what, call in calls.items():
                until_it_works(call, what, within=5.0)

        run_async(alim, body)


def test_stopped_server_fails_fast_then_works_after_the_restart(
    cluster: servers.PostgresServer,
) -> None:
    url = url_of(cluster)
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        calls = decisions(lim)
        for call in calls.values():
            call()
        alim = AsyncLimiter(store=url)

        async def body(alim: AsyncLimiter) -> None:
            acalls = async_decisions(alim)
            for acall in acalls.values():
                await acall()
            cluster.crash()
            for _ in range(2):
                for what, call in calls.items():
                    assert_unavailable_fast(call, what, REFUSED_BOUND)
                for what, acall in acalls.items():
                    await assert_unavailable_fast_async(acall, what, REFUSED_BOUND)
            cluster.start()
            # the pool retries a failed attempt to connect after 1 s, and the breaker probes
            # after its cooldown: a few seconds; each try is bounded
            began = time.monotonic()
            for what, acall in acalls.items():
                await until_it_works_async(acall, what)
            for what, call in calls.items():
                until_it_works(call, what)
            print(f"back after the restart in {time.monotonic() - began:.2f} s")

        run_async(alim, body)


def test_decisions_come_back_soon_after_a_long_outage(cluster: servers.PostgresServer) -> None:
    """Left to itself psycopg_pool doubles the delay between attempts to connect (1, 3, 7, 15,
    31 s after the outage began, for five minutes): a server back after 18 s was found some
    13 s later. Now an attempt is given up after RECONNECT_FOR and the next caller (the
    breaker's probe, within MAX_COOLDOWN) starts a fresh one, however long the outage."""
    from allowance.resilience import MAX_COOLDOWN
    from allowance.stores.postgres_conn import RECONNECT_FOR

    bound = RECONNECT_FOR + MAX_COOLDOWN + 1.0
    url = url_of(cluster)
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        alim = AsyncLimiter(store=url)

        async def body(alim: AsyncLimiter) -> None:
            await alim.check("acme", "export.ai")
            lim.check("acme", "export.ai")
            cluster.crash()
            outage_ends = time.monotonic() + 18.0
            while time.monotonic() < outage_ends:  # callers keep coming, as in production
                with pytest.raises(StoreUnavailable):
                    await alim.check("acme", "export.ai")
                with pytest.raises(StoreUnavailable):
                    lim.check("acme", "export.ai")
                await asyncio.sleep(0.2)
            cluster.start()
            began = time.monotonic()
            await until_it_works_async(lambda: alim.check("acme", "export.ai"), "async", bound)
            async_back = time.monotonic() - began
            until_it_works(lambda: lim.check("acme", "export.ai"), "sync", bound)
            print(f"back {async_back:.2f} s (async), {time.monotonic() - began:.2f} s (sync)")

        run_async(alim, body)


def until_it_works(call: Callable[[], object], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            call()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, f"{what}: still failing after {within} s"
            time.sleep(0.1)


async def until_it_works_async(
    call: Callable[[], Awaitable[object]], what: str, within: float = 15.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await call()
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, f"{what}: still failing after {within} s"
            await asyncio.sleep(0.1)


def concurrent(calls: list[Callable[[], object]]) -> list[BaseException]:
    """Run the calls at once in threads; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        start.wait(10)
        try:
            call()
        except BaseException as exc:  # collected, asserted by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_restart_under_pooled_connections_fails_no_decision(
    cluster: servers.PostgresServer,
) -> None:
    """Defect 5: after a restart the pool's connections are all dead; 20 concurrent calls
    (threads, then tasks) and a call after the pool sat idle through a restart: no error."""
    url = url_of(cluster, pool_min="10", pool_max="10")
    with Limiter(store=url, timeout=2.0) as lim:
        lim.set_account("acme", plan="pro")
        calls = decisions(lim)
        # every pooled connection used once (fast path prepared on them)
        assert concurrent([calls["fast check"]] * 20) == []
        alim = AsyncLimiter(store=url, timeout=2.0)

        async def body(alim: AsyncLimiter) -> list[object]:
            acalls = async_decisions(alim)
            await asyncio.gather(*(acalls["async fast check"]() for _ in range(20)))
            for round_ in range(2):
                cluster.crash()
                cluster.start()
                paths = list(calls.values()) * 7
                assert concurrent(paths[:20]) == [], f"round {round_}"
                got = await asyncio.gather(
                    *(f() for f in (list(acalls.values()) * 7)[:20]), return_exceptions=True
                )
                assert [g for g in got if isinstance(g, BaseException)] == []
            # idle through a restart: one call on each path
            cluster.crash()
            cluster.start()
            return [await acall() for acall in acalls.values()] + [c() for c in calls.values()]

        run_async(alim, body)
