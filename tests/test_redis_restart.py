"""Defect 5: after Redis restarts (kill -9, then the same server again on its port, with its
data on disk), no decision fails once it is back. Every connection the stores hold was closed
by the dead server; each is found closed before it is written to and replaced (nothing that
may have run is sent again: see stores/redis_wire.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

import servers
from allowance import AsyncLimiter, Limiter, Meter
from conftest import start_or_skip, unique_name, with_query

CALLS = 40
FEATURE, LIMIT = "background.studio", "studio"


def _used(usage: list[Meter]) -> int:
    return {m.limit: m.used for m in usage}[LIMIT]


def _key(i: int, round_: int) -> str | None:
    return f"k{round_}.{i}" if i % 2 else None  # half on the slow path


@pytest.fixture
def server() -> Iterator[servers.RedisServer]:
    started = start_or_skip(lambda: servers.start_redis(extra=servers.PERSISTENT), "Redis")
    assert isinstance(started, servers.RedisServer)
    try:
        yield started
    finally:
        started.stop()


def _threads_across(restart: Callable[[], None], url: str) -> None:
    """CALLS threads of one Limiter decide (each over its own connection), the server
    restarts, they decide again: no error, each charged once."""
    errors: list[BaseException] = []
    with Limiter(store=url) as lim:
        lim.set_account("acme", plan="pro")
        phase = threading.Barrier(CALLS + 1, timeout=30)

        def work(i: int) -> None:
            for round_ in range(2):
                phase.wait()
                try:
                    assert lim.consume("acme", FEATURE, idempotency_key=_key(i, round_)).allowed
                except BaseException as exc:
                    errors.append(exc)
                phase.wait()

        workers = [threading.Thread(target=work, args=(i,)) for i in range(CALLS)]
        for worker in workers:
            worker.start()
        phase.wait()  # round 0
        phase.wait()
        restart()
        phase.wait()  # round 1
        phase.wait()
        for worker in workers:
            worker.join(timeout=30)
        assert not errors, errors[:3]
        assert _used(lim.usage("acme")) == 2 * CALLS
        lim.set_account("acme", plan="max")  # and the calls beyond decisions
        assert lim.get_account("acme").plan == "max"


def _tasks_across(restart: Callable[[], None], url: str) -> None:
    async def main() -> None:
        async with AsyncLimiter(store=url) as lim:
            await lim.set_account("acme", plan="pro")
            for round_ in range(2):
                if round_:
                    await asyncio.to_thread(restart)
                decisions = await asyncio.gather(
                    *(
                        lim.consume("acme", FEATURE, idempotency_key=_key(i, round_))
                        for i in range(CALLS)
                    ),
                    return_exceptions=True,
                )
                failed = [d for d in decisions if isinstance(d, BaseException)]
                assert not failed, failed[:3]
            assert _used(await lim.usage("acme")) == 2 * CALLS
            await lim.set_account("acme", plan="max")
            assert (await lim.get_account("acme")).plan == "max"

    asyncio.run(main())


def test_threads_decide_without_error_after_a_restart(server: servers.RedisServer) -> None:
    _threads_across(server.restart, with_query(server.url, prefix=unique_name()))


def test_tasks_decide_without_error_after_a_restart(server: servers.RedisServer) -> None:
    _tasks_across(server.restart, with_query(server.url, prefix=unique_name()))


@pytest.fixture(scope="module")
def cluster() -> Iterator[servers.RedisCluster]:
    started = start_or_skip(
        lambda: servers.start_redis_cluster(extra=servers.PERSISTENT), "Redis Cluster"
    )
    assert isinstance(started, servers.RedisCluster)
    try:
        yield started
    finally:
        started.stop()


def _restart_owner(cluster: servers.RedisCluster, prefix: str) -> Callable[[], None]:
    """Restart the node that holds the account's slot."""
    import redis.cluster
    from redis.crc import key_slot

    def restart() -> None:
        key = f"{prefix}:{{acme}}:a"
        with redis.cluster.RedisCluster(host=servers.HOST, port=cluster.ports[0]) as client:
            owner = client.nodes_manager.get_node_from_slot(key_slot(key.encode())).port
        cluster.restart(next(n for n in cluster.nodes if n.port == owner))

    return restart


@pytest.mark.parametrize("driver", ["threads", "tasks"])
def test_cluster_decisions_without_error_after_a_node_restart(
    cluster: servers.RedisCluster, driver: str
) -> None:
    prefix = unique_name()
    url = with_query(cluster.url, prefix=prefix)
    across = _threads_across if driver == "threads" else _tasks_across
    across(_restart_owner(cluster, prefix), url)
