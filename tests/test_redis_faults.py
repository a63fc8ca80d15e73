"""Redis that fails as servers do, on throwaway servers this module starts: frozen (SIGSTOP),
refusing connections. Every decision is bounded by the store's timeout and fails with
``StoreUnavailable``; it works again once the server is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

import servers
from allowance import AsyncLimiter, Limiter, StoreUnavailable
from conftest import start_or_skip, unique_name, with_query

TIMEOUT = 0.2
SLACK = 0.05  # the bound: a hung store holds a decision at most timeout + 50 ms


@pytest.fixture(scope="module")
def server() -> Iterator[servers.RedisServer]:
    started = start_or_skip(servers.start_redis, "Redis")
    assert isinstance(started, servers.RedisServer)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def url(server: servers.RedisServer) -> str:
    return with_query(server.url, prefix=unique_name(), timeout=str(TIMEOUT))


@contextlib.contextmanager
def frozen(server: servers.RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): connections are accepted by the kernel, never answered."""
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


def _timed(call: Callable[[], object]) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        call()
    except BaseException as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


async def _timed_async(call: Callable[[], Awaitable[object]]) -> tuple[float, BaseException | None]:
    began = time.monotonic()
    try:
        await call()
    except BaseException as exc:
        return time.monotonic() - began, exc
    return time.monotonic() - began, None


RECOVERY = 5.0  # seconds for the limiter's breaker to probe the thawed server and close


def _recovers(call: Callable[[], object]) -> None:
    """``call`` is granted again once the server is back (after the breaker's probe)."""
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            assert call().allowed  # type: ignore[attr-defined]
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "still unavailable after the server came back"
            time.sleep(0.05)


async def _recovers_async(call: Callable[[], Awaitable[object]]) -> None:
    deadline = time.monotonic() + RECOVERY
    while True:
        try:
            assert (await call()).allowed  # type: ignore[attr-defined]
            return
        except StoreUnavailable:
            assert time.monotonic() < deadline, "still unavailable after the server came back"
            await asyncio.sleep(0.05)


def _assert_bounded(results: list[tuple[float, BaseException | None]]) -> None:
    for took, exc in results:
        assert isinstance(exc, StoreUnavailable), exc
        assert took <= TIMEOUT + SLACK, f"{took:.3f} s"


PATHS = {  # name -> (keyword arguments of consume)
    "fast": {},
    "slow": {"idempotency_key": None},  # a new key each call: the load/apply path
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_frozen_server_fails_each_decision_within_the_timeout(
    server: servers.RedisServer, url: str, path: str
) -> None:
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        keys = iter(range(1000))

        def decide() -> object:
            key = f"k{next(keys)}" if path == "slow" else None
            return lim.consume("acme", "export.ai", idempotency_key=key)

        assert decide().allowed  # type: ignore[attr-defined]
        fresh = Limiter(store=url)  # its first decision opens a connection to the frozen server
        try:
            with frozen(server):
                results = [_timed(decide) for _ in range(3)]
                results.append(_timed(lambda: fresh.consume("acme", "export.ai")))
        finally:
            fresh.close()
        _assert_bounded(results)
        _recovers(decide)


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_frozen_server_fails_each_async_decision_within_the_timeout(
    server: servers.RedisServer, url: str, path: str
) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=url) as lim, AsyncLimiter(store=url) as fresh:
            await lim.set_account("acme", plan="pro")
            keys = iter(range(1000))

            async def decide() -> object:
                key = f"k{next(keys)}" if path == "slow" else None
                return await lim.consume("acme", "export.ai", idempotency_key=key)

            assert (await decide()).allowed  # type: ignore[attr-defined]
            with frozen(server):
                results = [await _timed_async(decide) for _ in range(3)]
                # concurrent ones too, and a store whose first decision opens a connection
                results += await asyncio.gather(
                    *(_timed_async(decide) for _ in range(5)),
                    _timed_async(lambda: fresh.consume("acme", "export.ai")),
                )
            _assert_bounded(results)
            await _recovers_async(decide)

    asyncio.run(main())


def test_a_refused_connection_was_certainly_not_applied() -> None:
    port = servers.free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0?timeout={TIMEOUT}"
    with Limiter(store=url) as lim:
        with pytest.raises(StoreUnavailable) as info:
            lim.consume("acme", "export.ai")
        assert info.value.maybe_applied is False

    async def main() -> StoreUnavailable:
        async with AsyncLimiter(store=url) as alim:
            try:
                await alim.consume("acme", "export.ai")
            except StoreUnavailable as exc:
                return exc
        raise AssertionError("no error")

    assert asyncio.run(main()).maybe_applied is False


def test_a_lost_reply_may_have_been_applied(server: servers.RedisServer, url: str) -> None:
    """Sent, then no answer within the timeout: the server may run it after all."""
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai").allowed
        with frozen(server), pytest.raises(StoreUnavailable) as info:
            lim.consume("acme", "export.ai")
        assert info.value.maybe_applied is True
        time.sleep(0.05)  # the frozen server ran it once it was resumed
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 2


def test_the_timeout_comes_from_the_url_or_the_limiter(server: servers.RedisServer) -> None:
    base = with_query(server.url, prefix=unique_name())
    with Limiter(store=base) as default, Limiter(store=f"{base}&timeout=0.3") as by_url:
        assert default.store.timeout == 0.5  # type: ignore[attr-defined]
        assert by_url.store.timeout == 0.3  # type: ignore[attr-defined]
    with Limiter(store=f"{base}&timeout=0.3", timeout=0.1) as by_limiter:
        assert by_limiter.store.timeout == 0.1  # type: ignore[attr-defined]
        by_limiter.set_account("acme", plan="pro")  # redis-py never saw ?timeout=
        assert by_limiter.consume("acme", "export.ai").allowed


def test_a_write_that_fails_is_sent_again_on_a_new_connection(
    server: servers.RedisServer, url: str
) -> None:
    """A command whose write fails never left whole, so it is sent again on a new connection
    (once): the decision goes through, charged once. Here the held connection is shut for
    writing on our side while the server is frozen (so it cannot close its side: the
    connection does not look closed before the write, which then fails with EPIPE); the
    server resumes 50 ms later and answers on the new connection."""
    import socket
    import threading

    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai").allowed
        link = lim.store._links_here()[None]  # type: ignore[attr-defined]
        with frozen(server):
            link._conn._sock.shutdown(socket.SHUT_WR)
            threading.Timer(0.05, os.kill, (server.proc.pid, signal.SIGCONT)).start()
            assert lim.consume("acme", "export.ai", 2).granted == 2
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 3


@pytest.mark.parametrize("path", sorted(PATHS))
def test_a_master_without_replicas_in_sync_refuses_before_running(
    server: servers.RedisServer, url: str, path: str
) -> None:
    """``min-replicas-to-write`` unmet (a master cut off from its replicas): NOREPLICAS, the
    script did not run, so the decision is StoreUnavailable(maybe_applied=False), and
    ``allow`` grants it degraded (before: a plain StoreError, outside the failure modes)."""
    keys = iter(range(100))

    def key() -> str | None:
        return f"k{next(keys)}" if path == "slow" else None

    with Limiter(store=url, timeout=10) as lim:  # the setup, not under test: a loaded machine
        lim.set_account("acme", plan="pro")
    with servers._redis_client(server.port) as admin:
        admin.config_set("min-replicas-to-write", 1)
        try:
            with Limiter(store=url) as lim:
                with pytest.raises(StoreUnavailable) as info:
                    lim.consume("acme", "export.ai", idempotency_key=key())
                assert info.value.maybe_applied is False
            with Limiter(store=url, on_store_error="allow") as lim:
                assert lim.consume("acme", "export.ai", idempotency_key=key()).degraded

            async def main() -> StoreUnavailable:
                async with AsyncLimiter(store=url) as alim:
                    try:
                        await alim.consume("acme", "export.ai", idempotency_key=key())
                    except StoreUnavailable as exc:
                        return exc
                raise AssertionError("granted")

            assert asyncio.run(main()).maybe_applied is False
        finally:
            admin.config_set("min-replicas-to-write", 0)
    with Limiter(store=url) as lim:
        assert {m.limit: m.used for m in lim.usage("acme")}["ai_exports"] == 0
