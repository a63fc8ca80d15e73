"""What the stores take from their drivers beyond the public API, each used in one adapter
module, checked here against the installed versions so that an upgrade that changes one fails
loudly, naming the adapter to fix, instead of as a slow or wrong decision somewhere else:

* redis-py, in ``stores/redis_wire.py``: a connection's socket (``Connection._sock``), reading
  one reply (``read_response``; the async one with ``timeout=``), ``can_read``, and the
  cluster's slot map (``nodes_manager``: ``get_node_from_slot``, ``initialize``);
* psycopg, in ``stores/postgres_conn.py``: ``generators.execute`` driven by ``Connection.wait``
  with a timeout that raises ``errors._WaitTimeout``, and ``errors.error_from_result``;
* the standard library's ``json.scanner.make_scanner``, in ``stores/sqlite.py``;
* uvicorn's ``HttpToolsProtocol``, in ``http/protocol.py`` (``tests/service/test_slow_clients.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import json.scanner
import socket
from typing import Any

import psycopg
import pytest
import redis
import redis.asyncio
import redis.cluster
from psycopg import pq

from allowance.stores import postgres_conn


def changed(driver: str, what: str, adapter: str) -> str:
    return f"{driver} {what} changed: the adapter to update is {adapter}"


def test_redis_connections_as_redis_wire_drives_them(redis_url: str) -> None:
    why = "src/allowance/stores/redis_wire.py (Link)"
    pool = redis.ConnectionPool.from_url(redis_url)
    conn = pool.connection_class(**pool.connection_kwargs)
    try:
        assert conn._sock is None, changed("redis-py", "Connection._sock", why)
        conn.connect()
        assert isinstance(conn._sock, socket.socket), changed("redis-py", "Connection._sock", why)
        conn._sock.sendall(b"*1\r\n$4\r\nPING\r\n")  # a packed command, written by us
        assert conn.read_response() in (b"PONG", "PONG"), changed("redis-py", "read_response", why)
    finally:
        conn.disconnect()
        pool.disconnect()


def test_redis_async_connections_as_lanes_drive_them(redis_url: str) -> None:
    why = "src/allowance/stores/redis_wire.py (Lanes)"
    params = inspect.signature(redis.asyncio.Connection.read_response).parameters
    assert "timeout" in params, changed("redis-py", "async read_response(timeout=)", why)

    async def main() -> None:
        pool = redis.asyncio.ConnectionPool.from_url(redis_url)
        conn: Any = pool.connection_class(**pool.connection_kwargs)  # connect(): untyped
        try:
            await conn.connect()
            assert conn.is_connected, changed("redis-py", "async is_connected", why)
            assert not await conn.can_read(), changed("redis-py", "async can_read", why)
            await conn.send_packed_command(b"*1\r\n$4\r\nPING\r\n")
            reply = await conn.read_response(timeout=5)
            assert reply in (b"PONG", "PONG"), changed("redis-py", "async read_response", why)
        finally:
            await conn.disconnect()
            await pool.disconnect()

    asyncio.run(main())


def test_redis_cluster_slot_map_as_redis_wire_reads_it() -> None:
    why = "src/allowance/stores/redis_wire.py (slot_master, reread_slot_map)"
    for manager in (redis.cluster.NodesManager, redis.asyncio.cluster.NodesManager):
        for method in ("get_node_from_slot", "initialize"):
            assert callable(getattr(manager, method, None)), changed("redis-py", method, why)
    for client in (redis.cluster.RedisCluster, redis.asyncio.RedisCluster):
        init = inspect.getsource(client.__init__)
        assert "self.nodes_manager" in init, changed("redis-py", "RedisCluster.nodes_manager", why)


def test_psycopg_waits_as_the_fast_path_drives_them(postgres_url: str) -> None:
    why = "src/allowance/stores/postgres_conn.py"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        pg = conn.pgconn
        pg.send_query(b"SELECT 41 + 1")
        results = conn.wait(postgres_conn.execute(pg), timeout=5)
        assert results[-1].get_value(0, 0) == b"42", changed("psycopg", "execute/wait", why)
        pg.send_query(b"SELECT pg_sleep(5)")
        with pytest.raises(postgres_conn.WaitTimeout):
            conn.wait(postgres_conn.execute(pg), timeout=0.05)
        conn.close()  # mid-query: never reused (as TimedConnection does)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        pg = conn.pgconn
        pg.send_query(b"SELECT 1/0")
        result = conn.wait(postgres_conn.execute(pg), timeout=5)[-1]
        assert result.status == pq.ExecStatus.FATAL_ERROR
        error = postgres_conn.error_from_result(result, encoding=conn.info.encoding)
        assert isinstance(error, psycopg.errors.DivisionByZero), changed(
            "psycopg", "errors.error_from_result", why
        )


def test_json_scanner_as_sqlite_reads_counters() -> None:
    scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
    assert scan('{"a": [1.5, 2, []]} tail', 0) == ({"a": [1.5, 2, []]}, 19), changed(
        "Python", "json.scanner.make_scanner", "src/allowance/stores/sqlite.py"
    )
