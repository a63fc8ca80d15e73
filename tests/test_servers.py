"""The server fixtures of conftest.py and the throwaway servers of servers.py, checked with
real clients; and the skip / CI-failure rule for a missing server."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
import redis
import redis.cluster
from psycopg import sql

import conftest
import servers


def test_redis_ping_set_get(redis_url: str) -> None:
    assert urlsplit(redis_url).scheme == "redis"
    key = f"allowance-test:{secrets.token_hex(6)}"
    with redis.Redis.from_url(redis_url) as client:
        assert client.ping() is True
        try:
            assert client.set(key, "value", ex=60) is True
            assert client.get(key) == b"value"
        finally:
            client.delete(key)


def test_redis_cluster_keys_land_on_three_nodes(redis_cluster_url: str) -> None:
    parts = urlsplit(redis_cluster_url)
    assert parts.scheme == "redis+cluster"
    assert parts.hostname is not None and parts.port is not None
    run = secrets.token_hex(4)
    with redis.cluster.RedisCluster(host=parts.hostname, port=parts.port) as cluster:
        assert len(cluster.get_primaries()) >= 3
        placed: dict[str, str] = {}  # node name -> a key stored there
        for i in range(1000):
            key = f"{{tag{i}}}:allowance-test:{run}"
            placed.setdefault(cluster.get_node_from_key(key).name, key)
            if len(placed) == 3:
                break
        assert len(placed) == 3, "three hash tags on three different nodes"
        try:
            for key in placed.values():
                assert cluster.set(key, key, ex=60) is True
            for name, key in placed.items():
                assert cluster.get(key) == key.encode()
                host, port = name.rsplit(":", 1)
                with redis.Redis(host=host, port=int(port)) as node:  # the key lives there
                    assert node.get(key) == key.encode()
        finally:
            for key in placed.values():
                cluster.delete(key)
        for node in cluster.get_primaries():
            info = cluster.cluster_info(target_nodes=node)
            assert info["cluster_state"] == "ok", (node.name, info)


def test_postgres_select_and_schema(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    assert (parts.scheme, parts.username, parts.path) == ("postgresql", "postgres", "/test")
    schema = conftest.unique_name()
    exists = "select count(*) from information_schema.schemata where schema_name = %s"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
        try:
            assert conn.execute(exists, (schema,)).fetchone() == (1,)
        finally:
            conn.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
        assert conn.execute(exists, (schema,)).fetchone() == (0,)


def test_server_store_factories_give_fresh_store_urls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    option = {"redis": "prefix", "redis_cluster": "prefix", "postgres": "schema"}
    servers_ = {"redis": "redis_url", "redis_cluster": "redis_cluster_url"}
    for kind in option:
        factory = conftest.STORE_FACTORIES[kind]
        first, second = factory(request, tmp_path), factory(request, tmp_path)
        base = request.getfixturevalue(servers_.get(kind, "postgres_url"))
        names = []
        for url in (first, second):
            assert url.startswith(base + "?")
            query = parse_qs(urlsplit(url).query)
            (name,) = query[option[kind]]
            assert len(name) == 13 and name.startswith("t") and int(name[1:], 16) >= 0
            names.append(name)
        assert names[0] != names[1], "each call names a new, empty store"


def test_all_factories_look_alike(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    assert conftest.STORE_FACTORIES["memory"](request, tmp_path) == "memory://"
    sqlite = f"sqlite:///{tmp_path / 'allowance.db'}"
    assert conftest.STORE_FACTORIES["sqlite"](request, tmp_path) == sqlite


def test_with_query_keeps_existing_options() -> None:
    url = conftest.with_query("redis://h:1/0?socket_timeout=3", prefix="tab")
    assert url == "redis://h:1/0?socket_timeout=3&prefix=tab"


def test_a_server_url_from_the_environment_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def start() -> Any:
        raise AssertionError("must not start a server")

    monkeypatch.setenv("ALLOWANCE_TEST_REDIS_URL", "redis://10.0.0.1:6380/2")
    urls = conftest._server_url("ALLOWANCE_TEST_REDIS_URL", start, "Redis")
    assert list(urls) == ["redis://10.0.0.1:6380/2"]


MISSING: dict[str, Callable[[Path], Callable[[], Any]]] = {
    "redis": lambda tmp: lambda: servers.start_redis(binary=str(tmp / "redis-server")),
    "redis_cluster": lambda tmp: (
        lambda: servers.start_redis_cluster(binary=str(tmp / "redis-server"))
    ),
    "redis_cli": lambda tmp: lambda: servers.start_redis_cluster(cli_binary=str(tmp / "cli")),
    "postgres": lambda tmp: lambda: servers.start_postgres(bindir=tmp),
}


@pytest.mark.parametrize("kind", sorted(MISSING))
def test_a_missing_binary_skips_but_fails_under_ci(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = MISSING[kind](tmp_path)  # binaries looked up in an empty directory
    with pytest.raises(servers.ServerUnavailable, match="not found"):
        start()

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        conftest.start_or_skip(start, kind)

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: a missing server is a failure"):
        conftest.start_or_skip(start, kind)


def test_server_or_skip_decides_by_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("", "false", "0"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.skip.Exception, match=r"^no Redis$"):
            conftest.server_or_skip("no Redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"^no Redis"):
        conftest.server_or_skip("no Redis")
