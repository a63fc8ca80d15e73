"""The servers: from the environment or throwaway ones, Redis / Redis Cluster targets (clients,
masters, server-side counters, cleanup) and what PostgreSQL says about itself."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import redis
import redis.cluster

from stores.common import ENV, ROOT, SERVER_TITLE, SERVERS, ServerUnavailable, log

# --- servers ----------------------------------------------------------------------------------


@dataclass
class Servers:
    urls: dict[str, str]
    throwaway: set[str]


@contextlib.contextmanager
def servers() -> Iterator[Servers]:
    """URLs from the environment, else throwaway servers (started in parallel, stopped at the
    end, each by its own handle)."""
    urls = {name: os.environ[ENV[name]] for name in SERVERS if os.environ.get(ENV[name])}
    missing = [name for name in SERVERS if name not in urls]
    with contextlib.ExitStack() as stack:
        if missing:
            sys.path.insert(0, str(ROOT / "tests"))
            import servers as throwaway  # tests/servers.py

            starts: dict[str, Callable[[], Any]] = {
                "redis": throwaway.start_redis,
                "cluster": throwaway.start_redis_cluster,
                "postgresql": throwaway.start_postgres,
            }
            log(f"starting throwaway servers: {', '.join(SERVER_TITLE[m] for m in missing)}")
            with ThreadPoolExecutor(len(missing)) as pool:
                futures = {name: pool.submit(starts[name]) for name in missing}
            errors = []
            for name, future in futures.items():
                try:
                    handle = future.result()
                except Exception as exc:  # a missing binary, or a server that did not start
                    errors.append(f"{SERVER_TITLE[name]}: {exc}")
                    continue
                stack.callback(handle.stop)
                url = handle.url
                urls[name] = url
            if errors:
                raise ServerUnavailable("; ".join(errors))
        yield Servers(urls, set(missing))


@contextlib.contextmanager
def pgbouncer(pg_url: str) -> Iterator[str | None]:
    """A throwaway PgBouncer in transaction pooling mode in front of ``pg_url`` (its URL), or
    None where pgbouncer is not installed (its row is then left out)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import servers as throwaway  # tests/servers.py

    try:
        bouncer = throwaway.start_pgbouncer(pg_url)
    except (throwaway.ServerUnavailable, throwaway.ServerError) as exc:
        log(f"no PgBouncer row: {exc}")
        yield None
        return
    try:
        yield bouncer.url
    finally:
        bouncer.stop()


class RedisTarget:
    """A Redis server or cluster: clients, its masters, server-side counters, cleanup."""

    def __init__(self, url: str) -> None:
        self.url = url  # redis://... or redis+cluster://... (allowance's and limits' scheme)
        self.cluster = url.startswith("redis+cluster://")
        self.client_url = "redis://" + url.split("://", 1)[1] if self.cluster else url
        self.monitor = self.client()

    def client(self) -> Any:
        if self.cluster:
            return redis.cluster.RedisCluster.from_url(self.client_url)
        return redis.Redis.from_url(self.client_url)

    def masters(self) -> list[Any]:
        """Plain clients of every master (the one server when standalone)."""
        if not self.cluster:
            return [self.monitor]
        return [self.monitor.get_redis_connection(n) for n in self.monitor.get_primaries()]

    def evalsha_stats(self) -> tuple[int, int]:
        """(calls, usec) of EVALSHA so far, summed over the masters. Commands a script runs
        are counted under their own names as well, so only EVALSHA is summed."""
        calls = usec = 0
        for node in self.masters():
            stat = node.info("commandstats").get("cmdstat_evalsha", {})
            calls += int(stat.get("calls", 0))
            usec += int(stat.get("usec", 0))
        return calls, usec

    def version(self) -> str:
        return str(self.masters()[0].info("server")["redis_version"])

    def delete_prefix(self, prefix: str) -> int:
        """UNLINK every key under ``prefix:``, node by node, one key per command (a cluster
        refuses multi-key commands across slots)."""
        removed = 0
        for node in self.masters():
            pipe = node.pipeline(transaction=False)
            batch = 0
            for key in node.scan_iter(match=f"{prefix}:*", count=1000):
                pipe.unlink(key)
                batch += 1
                if batch >= 1000:
                    removed += sum(pipe.execute())
                    batch = 0
            if batch:
                removed += sum(pipe.execute())
        return removed

    def close(self) -> None:
        self.monitor.close()


@dataclass
class PgInfo:
    version: str
    fsync: str
    synchronous_commit: str
    free_connections: int

    @property
    def durable(self) -> bool:
        return self.fsync == "on" and self.synchronous_commit != "off"


def pg_info(url: str) -> PgInfo:
    with psycopg.connect(url, autocommit=True) as conn:

        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else ""

        reserved = int(show("superuser_reserved_connections") or 0)
        exists = conn.execute(
            "SELECT 1 FROM pg_settings WHERE name = 'reserved_connections'"
        ).fetchone()
        if exists:  # PostgreSQL 16+
            reserved += int(show("reserved_connections") or 0)
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchone()
        in_use = int(row[0]) if row else 0
        free = int(show("max_connections")) - reserved - in_use
        return PgInfo(show("server_version"), show("fsync"), show("synchronous_commit"), free)


def pg_execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)
