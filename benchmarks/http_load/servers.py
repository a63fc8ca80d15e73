"""The servers: uvicorn subprocesses (the bare route, ``allowance serve``) on free loopback
ports, and the stores behind them (Redis from the environment, local or throwaway; accounts and
a ``decide`` key created beforehand; the Redis prefix dropped afterwards)."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from http_load.common import (
    ALLOWANCE,
    BARE,
    BENCHMARKS,
    DEFAULT_POSTGRES,
    DEFAULT_REDIS,
    PLAN,
    POSTGRES_ENV,
    REDIS_ENV,
    ROOT,
    ServerUnavailable,
    add_query,
)

LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")
UVICORN = (
    "--http",
    "httptools",
    "--loop",
    "uvloop",
    "--workers",
    "1",
    "--no-access-log",
    "--no-proxy-headers",
    "--no-server-header",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# --- servers ----------------------------------------------------------------------------------


class Server:
    """A uvicorn subprocess on a free loopback port (``--port 0``; the port is read from its
    log). Stopped by its own handle."""

    def __init__(self, title: str, command: list[str], log_path: Path, env: dict[str, str]):
        self.title = title
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log_path.parent
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = LISTENING.search(log_path.read_bytes())
            if found:
                self.url = f"http://127.0.0.1:{found.group(1).decode()}"
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise ServerUnavailable(f"{title} did not start:\n{tail}")

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT: uvicorn shuts down and re-raises it, as KeyboardInterrupt, so a
            # cProfile around the server still writes its file (it would not on SIGTERM)
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bare(tmp: Path) -> Server:
    # benchmarks/ on the server's sys.path, as for the scripts: the app is http_load.bare_app
    command = [sys.executable, "-m", "uvicorn", "http_load.bare_app:app"]
    command += ["--app-dir", str(BENCHMARKS), "--host", "127.0.0.1", "--port", "0", *UVICORN]
    return Server(BARE, command, tmp / "bare.log", dict(os.environ))


def start_allowance(title: str, store: str, tmp: Path, profile: Path | None = None) -> Server:
    command = [str(ALLOWANCE), "serve", "--host", "127.0.0.1", "--port", "0", "--store", store]
    if profile is not None:  # cProfile of the server's main thread, written when it stops
        out = profile / f"{title.replace(' ', '-')}.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(out), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLOWANCE_")}
    return Server(title, command, tmp / f"{title.replace(' ', '-')}.log", env)


# --- stores -----------------------------------------------------------------------------------


@dataclass
class Store:
    name: str
    url: str
    setup_url: str  # the same data; at synchronous=normal (SQLite) or off (PostgreSQL)
    redis_prefix: str | None = None
    postgres_schema: str | None = None


def _redis_answers(url: str) -> bool:
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=1) as client:
            client.ping()
    except redis.RedisError:
        return False
    return True


def _postgres_answers(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=1).close()
    except psycopg.Error:
        return False
    return True


@contextlib.contextmanager
def _server_url(
    title: str, env: str, default: str, answers: Callable[[str], bool], start: str
) -> Iterator[tuple[str, str]]:
    """(url, source): the environment's, the local default if it answers, else a throwaway
    server from ``tests/servers.py`` (its function ``start``), stopped at the end."""
    if os.environ.get(env):
        yield os.environ[env], env
        return
    if answers(default):
        yield default, "local"
        return
    sys.path.insert(0, str(ROOT / "tests"))
    import servers as throwaway  # tests/servers.py

    try:
        handle = getattr(throwaway, start)()
    except Exception as exc:  # a missing binary, or a server that did not start
        raise ServerUnavailable(f"{title}: {exc}") from exc
    try:
        yield handle.url, "throwaway"
    finally:
        handle.stop()


def redis_url() -> contextlib.AbstractContextManager[tuple[str, str]]:
    return _server_url("Redis", REDIS_ENV, DEFAULT_REDIS, _redis_answers, "start_redis")


def postgres_url() -> contextlib.AbstractContextManager[tuple[str, str]]:
    return _server_url(
        "PostgreSQL", POSTGRES_ENV, DEFAULT_POSTGRES, _postgres_answers, "start_postgres"
    )


def make_store(name: str, tmp: Path, redis: str | None, postgres: str | None) -> Store:
    if name in ("sqlite", "sqlite-normal"):
        path = tmp / f"{name}.db"
        url = f"sqlite:///{path}" + ("?synchronous=normal" if name == "sqlite-normal" else "")
        return Store(name, url, f"sqlite:///{path}?synchronous=normal")
    if name == "postgresql":
        assert postgres is not None
        schema = "benchhttp" + secrets.token_hex(4)
        url = add_query(postgres, schema=schema)
        setup = add_query(url, options="-c synchronous_commit=off")
        return Store(name, url, setup, postgres_schema=schema)
    assert redis is not None
    prefix = "benchhttp" + secrets.token_hex(4)
    url = add_query(redis, prefix=prefix)
    return Store(name, url, url, prefix)


def prepare(store: Store, accounts: list[str]) -> str:
    """Create the accounts and a ``decide`` key in the store; returns the key's secret."""
    from allowance import Limiter
    from allowance.keys import new_key

    with Limiter(None, store.setup_url) as lim:
        for account in accounts:
            lim.set_account(account, plan=PLAN)
        key, secret = new_key("decide", "bench_http", lim.store.now())
        lim.store.keyring().add(key)
    return secret


def drop_prefix(url: str, prefix: str) -> None:
    import redis

    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            client.unlink(*keys[i : i + 1000])


def drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
