"""Shared fixtures. ``store_url`` runs a test once per store; later stores (Redis, PostgreSQL)
join by adding a factory to STORE_FACTORIES.

Server fixtures (``redis_url``, ``redis_cluster_url``, ``postgres_url``) are session-scoped and
lazy: a server is started only when a test asks for one. Each uses the server named by
``ALLOWANCE_TEST_REDIS_URL`` / ``ALLOWANCE_TEST_REDIS_CLUSTER_URL`` /
``ALLOWANCE_TEST_POSTGRES_URL`` when set, else starts a throwaway one from the local binaries
(tests/servers.py), else skips with the reason; with ``CI=true`` a missing server fails
instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

import servers
from allowance import Limiter, ManualClock

START = "2026-11-23T15:10:00Z"  # a Monday, the seed's first generation

# --- server fixtures ---------------------------------------------------------------------------


class _Server(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


def ci_requires_servers(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``CI`` is ``true``: then a server that cannot be had is a failure."""
    env = os.environ if environ is None else environ
    return env.get("CI", "").strip().lower() == "true"


def server_or_skip(reason: str) -> NoReturn:
    """Skip the test for ``reason`` (a server is missing); under ``CI=true`` fail instead."""
    if ci_requires_servers():
        pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def start_or_skip(start: Callable[[], _Server], what: str) -> _Server:
    """``start()``, or skip / fail (see ``server_or_skip``) when its binaries are missing.
    Other start-up failures are errors: a server that is there but broken is not skipped."""
    try:
        return start()
    except servers.ServerUnavailable as exc:
        server_or_skip(f"no {what}: {exc}")


def _server_url(env_var: str, start: Callable[[], _Server], what: str) -> Iterator[str]:
    url = os.environ.get(env_var, "").strip()
    if url:
        yield url
        return
    server = start_or_skip(start, f"{what} ({env_var} is not set)")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:PORT/0`` of a Redis for this session."""
    yield from _server_url("ALLOWANCE_TEST_REDIS_URL", servers.start_redis, "Redis")


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """``redis+cluster://127.0.0.1:PORT`` (any one node) of a 3-master Redis Cluster."""
    yield from _server_url(
        "ALLOWANCE_TEST_REDIS_CLUSTER_URL", servers.start_redis_cluster, "Redis Cluster"
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/test`` of a PostgreSQL for this session."""
    yield from _server_url("ALLOWANCE_TEST_POSTGRES_URL", servers.start_postgres, "PostgreSQL")


@pytest.fixture(scope="session")
def pgbouncer_url(postgres_url: str) -> Iterator[str]:
    """``postgresql://postgres@127.0.0.1:PORT/test`` of a PgBouncer in transaction pooling mode
    (default settings) in front of ``postgres_url``."""
    yield from _server_url(
        "ALLOWANCE_TEST_PGBOUNCER_URL",
        lambda: servers.start_pgbouncer(postgres_url, "transaction"),
        "PgBouncer",
    )


# --- store factories ---------------------------------------------------------------------------

StoreFactory = Callable[[pytest.FixtureRequest, Path], str]


def unique_name() -> str:
    """``t`` + 12 random hex digits: a Redis key prefix or PostgreSQL schema of one test."""
    return "t" + secrets.token_hex(6)


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query string."""
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


# Clean-up after each test is best effort: the random prefix / schema already isolates tests;
# it only keeps long-lived servers (those of the ALLOWANCE_TEST_* variables) from filling up.
# (redis and psycopg are imported where used, so that sessions without servers skip them.)
def _cleanup_errors() -> tuple[type[Exception], ...]:
    import psycopg
    import redis
    import redis.exceptions

    return (redis.RedisError, redis.exceptions.RedisClusterException, psycopg.Error, OSError)


def _delete_keys(client: Any, prefix: str) -> None:
    """Delete the keys of one test from a ``redis.Redis`` or ``redis.cluster.RedisCluster``."""
    # "*prefix*" also matches hash-tagged keys such as "{tPREFIX}:..." (the prefix is random hex)
    for key in list(client.scan_iter(match=f"*{prefix}*", count=1000)):
        client.unlink(key)


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://"


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'allowance.db'}"


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    base = request.getfixturevalue("redis_url")
    prefix = unique_name()

    def cleanup() -> None:
        import redis

        with (
            contextlib.suppress(*_cleanup_errors()),
            redis.Redis.from_url(base, socket_timeout=5) as client,
        ):
            _delete_keys(client, prefix)

    request.addfinalizer(cleanup)
    return with_query(base, prefix=prefix)


def _redis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    base = request.getfixturevalue("redis_cluster_url")
    prefix = unique_name()

    def cleanup() -> None:
        import redis.cluster

        host, port = _host_port(base, 6379)
        with (
            contextlib.suppress(*_cleanup_errors()),
            redis.cluster.RedisCluster(host=host, port=port, socket_timeout=5) as client,
        ):
            _delete_keys(client, prefix)

    request.addfinalizer(cleanup)
    return with_query(base, prefix=prefix)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _postgres_schema(request, request.getfixturevalue("postgres_url"))


def _postgres_pgbouncer(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A schema used through the PgBouncer, dropped directly on the server."""
    direct = request.getfixturevalue("postgres_url")
    bouncer = request.getfixturevalue("pgbouncer_url")
    return with_query(bouncer, schema=_postgres_schema(request, direct, url=False))


def _postgres_schema(request: pytest.FixtureRequest, base: str, url: bool = True) -> str:
    """A fresh schema's URL on ``base`` (or only its name), dropped after the test."""
    schema = unique_name()

    def cleanup() -> None:
        import psycopg
        from psycopg import sql

        with (
            contextlib.suppress(*_cleanup_errors()),
            psycopg.connect(base, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute("set lock_timeout = '5s'")
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))

    request.addfinalizer(cleanup)
    return with_query(base, schema=schema) if url else schema


# ``factory(request, tmp_path) -> url`` of a fresh, empty, isolated store for one test: Redis
# keys under a random ``prefix``, PostgreSQL tables in a random ``schema``. Server fixtures are
# requested lazily inside the factories, so memory / sqlite runs never start a server.
STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "redis": _redis,
    "redis_cluster": _redis_cluster,
    "postgres": _postgres,
}
# The conformance suite also runs through a PgBouncer in transaction pooling mode (~20 s);
# the longer suites (the model comparison) keep to STORE_FACTORIES.
CONFORMANCE_FACTORIES: dict[str, StoreFactory] = {
    **STORE_FACTORIES,
    "postgres_pgbouncer": _postgres_pgbouncer,
}


@pytest.fixture(params=sorted(CONFORMANCE_FACTORIES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store's URL; one test run per store kind."""
    return CONFORMANCE_FACTORIES[request.param](request, tmp_path)


# --- the rest ----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def limiter(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    """A Limiter with the built-in policy on a fresh store, its clock at Monday 15:10 UTC."""
    lim = Limiter(store=store_url, clock=clock)
    yield lim
    lim.close()
