"""A Redis Cluster master killed (kill -9) under load: its replica is promoted, the store
follows the new slot map, and decisions go on; the seconds of failed decisions and what was
granted meanwhile are printed and recorded (issue 10)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from redis.crc import key_slot

import failover
import servers
from allowance import Limiter
from conftest import start_or_skip, unique_name


def _master_port(ports: list[int], slot: int) -> int | None:
    """The port of the master serving ``slot``, as the first live node that answers says."""
    for port in ports:
        try:
            with redis.Redis(port=port, socket_timeout=0.5) as node:
                for start, end, master, *_ in node.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return int(master[1])
        except redis.RedisError:
            continue
    return None


@pytest.mark.faults
def test_a_cluster_master_killed_under_load(record_property: Callable[[str, object], None]) -> None:
    started = start_or_skip(lambda: servers.start_redis_cluster(replicas=1), "Redis Cluster")
    assert isinstance(started, servers.RedisCluster)
    cluster = started
    try:
        slot = key_slot(failover.ACCOUNTS[0].encode())  # the hash tag is the account
        old = _master_port(cluster.ports, slot)
        victim = next(node for node in cluster.nodes if node.port == old)
        others = [port for port in cluster.ports if port != old]
        # the URL names a node that survives: a client starting later still finds the cluster
        url = f"redis+cluster://127.0.0.1:{others[0]}?prefix={unique_name()}&timeout=0.5"
        with Limiter(store=url) as admin:
            for account in failover.ACCOUNTS:
                admin.set_account(account, plan="max")

        def promoted() -> bool:
            return _master_port(others, slot) not in (old, None)

        failover.under_load(
            url,
            victim.kill,
            promoted,
            record_property,
            after=3.0,  # a reread of the slot map follows the replica's promotion
            failover="cluster master kill -9",
        )
    finally:
        cluster.stop()
