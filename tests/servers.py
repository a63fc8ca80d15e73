"""Throwaway Redis, Redis Cluster and PostgreSQL servers for tests, started from the local
binaries on free loopback ports (the recipes of /work/shared/SERVERS.md).

Each ``start_*`` returns a handle whose ``stop()`` ends exactly the processes it started (by
their process, never by name) and removes its temporary directory. A missing binary raises
``ServerUnavailable`` before anything is started; any other failure raises ``ServerError``
with the tail of the server's log.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # redis and psycopg are imported where used: a session without servers
    import redis  # does not pay for importing them

HOST = "127.0.0.1"
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
INITDB_OPTIONS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
PG_STOP = ("-m", "immediate", "-w", "-t", "30", "stop")
START_ATTEMPTS = 3  # a port picked by binding to port 0 can be taken before the server binds it

T = TypeVar("T")


class ServerUnavailable(RuntimeError):
    """A binary (or the user) needed to start a throwaway server is missing here."""


class ServerError(RuntimeError):
    """A throwaway server was found but did not start (the message has its log's tail)."""


class _PortInUse(ServerError):
    """The picked port was taken meanwhile: retry on other ports."""


def free_ports(count: int = 1) -> list[int]:
    """``count`` distinct free loopback ports (all sockets held open until every one is picked)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def free_port() -> int:
    return free_ports(1)[0]


def find_binary(name: str, binary: str | None = None) -> str:
    """The path of ``binary`` (when given) or of ``name`` on PATH, else ``ServerUnavailable``."""
    found = shutil.which(binary or name)
    if found is None:
        where = repr(binary) if binary else "on PATH"
        raise ServerUnavailable(f"{name} not found ({where}); install it to run these tests")
    return found


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _with_retries(start: Callable[[], T]) -> T:
    for attempt in range(START_ATTEMPTS):
        try:
            return start()
        except _PortInUse:
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _end_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate ``proc`` (one we started) and reap it; kill it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def _redis_client(port: int) -> redis.Redis:
    """A client that fails at once (redis-py's default retries take ~4 s per refused call)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=1,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
    )


# --- Redis -------------------------------------------------------------------------------------


#: for tests that kill a server and start it again with its data: every write on disk first
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


@dataclass
class RedisServer:
    """One ``redis-server`` process we started, in the foreground, with its own directory."""

    port: int
    proc: subprocess.Popen[bytes]
    dir: Path
    owns_dir: bool = True
    args: list[str] = field(default_factory=list)  # how it was started (for ``restart``)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown, no save; reaped."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def restart(self, *, timeout: float = 10) -> None:
        """``kill()``, then the same server again on the same port and directory (with its
        data if it was started ``PERSISTENT``); returns once it answers PING."""
        self.kill()
        deadline = time.monotonic() + timeout
        while True:  # the port can stay bound for a moment after the kill
            self.proc = _popen_redis(self.args, self.dir)
            try:
                _wait_redis(self, deadline)
                return
            except _PortInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self) -> None:
        _end_process(self.proc)
        if self.owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _popen_redis(args: list[str], directory: Path) -> subprocess.Popen[bytes]:
    log = (directory / "redis.log").open("ab")
    with log:
        return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=directory)


def _spawn_redis(
    binary: str, port: int, directory: Path, extra: Sequence[str], owns_dir: bool
) -> RedisServer:
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        HOST,
        "--dir",
        str(directory),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        *extra,
    ]
    (directory / "redis.log").write_bytes(b"")
    return RedisServer(port, _popen_redis(args, directory), directory, owns_dir, args)


def _wait_redis(server: RedisServer, deadline: float) -> None:
    """Until PING answers from *our* process (``INFO server`` ``process_id == proc.pid``)."""
    import redis

    client = _redis_client(server.port)
    try:
        while True:
            code = server.proc.poll()
            if code is not None:
                log = _tail(server.log)
                kind = _PortInUse if "Address already in use" in log else ServerError
                raise kind(f"redis-server on port {server.port} exited with {code}:\n{log}")
            try:
                if client.ping() and client.info("server")["process_id"] == server.proc.pid:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(
                    f"redis-server on port {server.port} did not answer PING in time:\n"
                    + _tail(server.log)
                )
            time.sleep(0.01)
    finally:
        client.close()


def start_redis(
    *, binary: str | None = None, timeout: float = 10, extra: Sequence[str] = ()
) -> RedisServer:
    """A standalone Redis on a free loopback port (``server.url`` is ``redis://...:P/0``);
    ``extra``: more ``redis-server`` options (later ones win, e.g. ``PERSISTENT``)."""
    exe = find_binary("redis-server", binary)

    def attempt() -> RedisServer:
        directory = Path(tempfile.mkdtemp(prefix="allowance-redis-"))
        server = _spawn_redis(exe, free_port(), directory, extra, owns_dir=True)
        try:
            _wait_redis(server, time.monotonic() + timeout)
        except BaseException:
            server.stop()
            raise
        return server

    return _with_retries(attempt)


# --- Redis Sentinel ----------------------------------------------------------------------------

SERVICE = "allowance"  # the name the sentinels monitor the master by


@dataclass
class RedisSentinel:
    """A master, its replicas and the sentinels that watch them, all ``redis-server``s we
    started (a sentinel is ``redis-server sentinel.conf --sentinel``)."""

    master: RedisServer
    replicas: list[RedisServer]
    sentinels: list[RedisServer]
    dir: Path
    service: str = SERVICE

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every sentinel, the service and database 0."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas, *self.sentinels]

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers sees it."""
        import redis

        for sentinel in self.sentinels:
            client = _redis_client(sentinel.port)
            try:
                found: Any = client.sentinel_get_master_addr_by_name(self.service)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if found:
                return int(found[1])
        return None

    def server_on(self, port: int) -> RedisServer:
        return next(s for s in (self.master, *self.replicas) if s.port == port)

    def stop(self) -> None:
        for server in self.servers:  # terminate all first, then reap: they stop in parallel
            if server.proc.poll() is None:
                server.proc.terminate()
        for server in self.servers:
            _end_process(server.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _sentinel_ready(port: int, service: str, replicas: int, sentinels: int) -> bool:
    """The sentinel knows the master, its replicas (in sync) and the other sentinels."""
    import redis

    client = _redis_client(port)
    try:
        masters: Any = client.sentinel_masters()
        known: Any = client.sentinel_slaves(service)
        peers: Any = client.sentinel_sentinels(service)
    except redis.RedisError:
        return False
    finally:
        client.close()
    state = masters.get(service)
    up = [r for r in known if not (r.get("is_sdown") or r.get("is_odown"))]
    linked = [r for r in up if r.get("master-link-status", "ok") == "ok"]
    return bool(
        state is not None
        and state.get("is_master")
        and len(linked) >= replicas
        and len(peers) >= sentinels - 1
    )


def start_redis_sentinel(
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 1000,
    binary: str | None = None,
    timeout: float = 30,
    extra: Sequence[str] = (),
) -> RedisSentinel:
    """A master, ``replicas`` replicas and ``sentinels`` sentinels (quorum: a majority) on
    free loopback ports, returned once every sentinel knows the master, the replicas (in
    sync) and the other sentinels, so that a failover can happen at once. A master is
    judged down after ``down_after_ms`` without an answer. ``extra``: more options for the
    master and replicas."""
    exe = find_binary("redis-server", binary)

    def attempt() -> RedisSentinel:
        deadline = time.monotonic() + timeout
        root = Path(tempfile.mkdtemp(prefix="allowance-redis-sentinel-"))
        ports = free_ports(1 + replicas + sentinels)
        data = ("--repl-diskless-sync-delay", "0", *extra)
        group: RedisSentinel | None = None
        started: list[RedisServer] = []
        try:
            for i, port in enumerate(ports[: 1 + replicas]):
                directory = root / str(port)
                directory.mkdir()
                options = data if i == 0 else (*data, "--replicaof", HOST, str(ports[0]))
                started.append(_spawn_redis(exe, port, directory, options, owns_dir=False))
            for server in started:
                _wait_redis(server, deadline)
            quorum = sentinels // 2 + 1
            for port in ports[1 + replicas :]:
                directory = root / str(port)
                directory.mkdir()
                conf = directory / "sentinel.conf"
                conf.write_text(
                    f"port {port}\nbind {HOST}\ndir {directory}\ndaemonize no\n"
                    f"sentinel monitor {SERVICE} {HOST} {ports[0]} {quorum}\n"
                    f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                    f"sentinel failover-timeout {SERVICE} 10000\n"
                    f"sentinel parallel-syncs {SERVICE} 1\n"
                )
                args = [exe, str(conf), "--sentinel"]
                (directory / "redis.log").write_bytes(b"")
                proc = _popen_redis(args, directory)
                started.append(RedisServer(port, proc, directory, False, args))
            group = RedisSentinel(
                started[0], started[1 : 1 + replicas], started[1 + replicas :], root
            )
            for sentinel in group.sentinels:
                _wait_redis(sentinel, deadline)
            pending = {s.port for s in group.sentinels}
            while pending:
                pending = {
                    port
                    for port in pending
                    if not _sentinel_ready(port, SERVICE, replicas, sentinels)
                }
                if pending and time.monotonic() > deadline:
                    raise ServerError(f"sentinels on ports {sorted(pending)} are not ready")
                if pending:
                    time.sleep(0.05)
        except BaseException:
            if group is None:
                for server in started:
                    _end_process(server.proc)
                shutil.rmtree(root, ignore_errors=True)
            else:
                group.stop()
            raise
        return group

    return _with_retries(attempt)


# --- Redis Cluster -----------------------------------------------------------------------------


@dataclass
class RedisCluster:
    """Cluster-enabled ``redis-server`` nodes we started (masters, and replicas if asked)."""

    nodes: list[RedisServer]
    dir: Path

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` with one node; clients discover the others."""
        return f"redis+cluster://{HOST}:{self.nodes[0].port}"

    def restart(self, node: RedisServer, *, timeout: float = 30) -> None:
        """Kill ``node`` and start it again (it rejoins with its ``nodes.conf``); returns once
        every node says ``cluster_state:ok`` (a restarted master refuses writes for ~2 s)."""
        node.restart(timeout=timeout)
        self.wait_ok(timeout=timeout)

    def wait_ok(self, *, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        pending = {n.port for n in self.nodes if n.proc.poll() is None}
        while pending:
            pending = {port for port in pending if _cluster_state(port) != "ok"}
            if pending and time.monotonic() > deadline:
                raise ServerError(f"cluster_state is not ok on ports {sorted(pending)}")
            if pending:
                time.sleep(0.02)

    def stop(self) -> None:
        for node in self.nodes:  # terminate all first, then reap: they stop in parallel
            if node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            _end_process(node.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cluster_state(port: int) -> str | None:
    import redis

    client = _redis_client(port)
    try:
        info = client.cluster("INFO")  # sends CLUSTER INFO
    except redis.RedisError:
        return None
    finally:
        client.close()
    if isinstance(info, dict):  # redis-py parses CLUSTER INFO into a dict
        state = info.get("cluster_state")
        return state.decode() if isinstance(state, bytes) else state
    text = info.decode() if isinstance(info, bytes) else str(info)
    match = re.search(r"cluster_state:(\w+)", text)
    return match.group(1) if match else None


def _replicas_in_sync(ports: list[int], expected: int) -> bool:
    import redis

    synced = 0
    for port in ports:
        client = _redis_client(port)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        synced += info.get("role") == "slave" and info.get("master_link_status") == "up"
    return synced >= expected


def start_redis_cluster(
    *,
    masters: int = 3,
    replicas: int = 0,
    binary: str | None = None,
    cli_binary: str | None = None,
    timeout: float = 30,
    extra: Sequence[str] = (),
) -> RedisCluster:
    """A Redis Cluster of ``masters`` nodes, each with its own dir and cluster-bus port, and
    ``replicas`` replicas of each master (returned once they are in sync); ``extra``: more
    ``redis-server`` options for every node."""
    exe = find_binary("redis-server", binary)
    cli = find_binary("redis-cli", cli_binary)
    count = masters * (1 + replicas)
    # without the delay 0, replicas sync only after ~6 s
    options = ("--repl-diskless-sync-delay", "0", *extra) if replicas else tuple(extra)

    def attempt() -> RedisCluster:
        deadline = time.monotonic() + timeout
        root = Path(tempfile.mkdtemp(prefix="allowance-redis-cluster-"))
        ports = free_ports(2 * count)  # P and its cluster-bus port B for each node
        cluster = RedisCluster([], root)
        try:
            for port, bus in zip(ports[:count], ports[count:], strict=True):
                directory = root / str(port)
                directory.mkdir()
                node_args = [
                    "--cluster-port",
                    str(bus),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "1000",
                    *options,
                ]
                cluster.nodes.append(_spawn_redis(exe, port, directory, node_args, owns_dir=False))
            for node in cluster.nodes:
                _wait_redis(node, deadline)
            created = subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"{HOST}:{port}" for port in cluster.ports),
                    "--cluster-replicas",
                    str(replicas),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
            if created.returncode != 0:
                raise ServerError(
                    f"redis-cli --cluster create failed ({created.returncode}):\n"
                    f"{created.stdout[-2000:]}{created.stderr[-2000:]}"
                )
            cluster.wait_ok(timeout=max(0.0, deadline - time.monotonic()))
            while replicas and not _replicas_in_sync(cluster.ports, masters * replicas):
                if time.monotonic() > deadline:
                    raise ServerError("the cluster's replicas did not sync in time")
                time.sleep(0.02)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    return _with_retries(attempt)


# --- PostgreSQL --------------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bindir(bindir: str | Path | None = None) -> Path:
    """The directory with ``initdb`` and ``pg_ctl``: ``bindir`` when given, else the newest
    ``/usr/lib/postgresql/*/bin``, else the directory of ``initdb`` on PATH."""
    if bindir is not None:
        candidates = [Path(bindir)]
    else:
        candidates = sorted(Path("/").glob(PG_BIN_GLOB.lstrip("/")), key=_version_key)[::-1]
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in ("initdb", "pg_ctl")):
            return candidate
    where = str(bindir) if bindir is not None else f"{PG_BIN_GLOB} or on PATH"
    raise ServerUnavailable(f"PostgreSQL's initdb and pg_ctl not found in {where}")


@dataclass
class PostgresServer:
    """A PostgreSQL cluster we initialised and started (with a database ``test``)."""

    port: int
    dir: Path
    bindir: Path
    as_user: list[str] = field(default_factory=list)  # ["runuser", "-u", "postgres", "--"]
    options: str = ""  # pg_ctl -o: the port, addresses and settings it was started with

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/test"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self) -> list[int]:
        """The postmaster of this data directory and its children (backends, workers), by pid:
        found from ``postmaster.pid`` and ``/proc``, never by name."""
        postmaster = self._postmaster_pid()
        if postmaster is None:
            return []
        pids = [postmaster]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:  # field 4: the ppid
                pids.append(int(entry.name))
        return pids

    def signal_all(self, sig: int) -> None:
        """``sig`` to every process of this cluster (SIGSTOP freezes it, SIGCONT thaws it)."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def _pg_ctl(self, *args: str) -> None:
        done = subprocess.run(
            [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise ServerError(f"pg_ctl {args[-1]} failed: {done.stdout}{done.stderr}")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``, the data directory kept (``start`` brings it back)."""
        self._pg_ctl(*PG_STOP)

    def start(self) -> None:
        """Start it again, on the same port with the same options."""
        self._pg_ctl("-l", str(self.dir / "log"), "-w", "-t", "30", "-o", self.options, "start")

    def stop(self) -> None:
        """``pg_ctl -m immediate stop`` (it signals the postmaster of *this* data directory);
        if that fails, SIGKILL that postmaster by its pid. Then remove the directory."""
        pid = self._postmaster_pid()
        if pid is not None:
            stopped = subprocess.run(
                [*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data), *PG_STOP],
                capture_output=True,
                check=False,
            )
            if stopped.returncode != 0 and self._postmaster_pid() == pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_postgres(*, bindir: str | Path | None = None, timeout: float = 30) -> PostgresServer:
    """PostgreSQL on a free loopback port, trust auth, fsync off, with a database ``test``.

    As root, initdb and pg_ctl run as the ``postgres`` user (initdb refuses root) in a
    ``mktemp -d`` directory chowned to it."""
    import psycopg

    bin_path = find_postgres_bindir(bindir)
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            raise ServerUnavailable(
                "running as root, PostgreSQL needs the 'postgres' user and runuser"
            )
        as_user = [runuser, "-u", "postgres", "--"]

    def run(args: list[str], what: str, log: Path | None = None) -> None:
        done = subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            output = done.stdout + done.stderr + (_tail(log) if log else "")
            kind = _PortInUse if "Address already in use" in output else ServerError
            raise kind(f"{what} failed ({done.returncode}):\n{output[-3000:]}")

    directory = Path(tempfile.mkdtemp(prefix="allowance-pg-", dir="/tmp"))
    server = PostgresServer(0, directory, bin_path, as_user)
    try:
        if owner is not None:
            os.chown(directory, owner.pw_uid, owner.pw_gid)
        run(
            [
                str(bin_path / "initdb"),
                "-D",
                str(server.data),
                *INITDB_OPTIONS,
                "--no-instructions",
            ],
            "initdb",
        )
    except BaseException:
        server.stop()
        raise

    def attempt() -> PostgresServer:
        server.port = free_port()
        options = (
            f"-p {server.port} -c listen_addresses={HOST} -c unix_socket_directories={directory}"
            # fsync off: a commit still reaches the OS before it returns, so a crash of
            # the server (not of the machine) keeps it; synchronous_commit=off would not
            " -c fsync=off"
        )
        server.options = options
        log = directory / "log"
        run(
            [
                str(bin_path / "pg_ctl"),
                "-D",
                str(server.data),
                "-l",
                str(log),
                "-w",
                "-t",
                str(int(timeout)),
                "-o",
                options,
                "start",
            ],
            f"pg_ctl start on port {server.port}",
            log,
        )
        return server

    try:
        _with_retries(attempt)
        with psycopg.connect(
            f"postgresql://postgres@{HOST}:{server.port}/postgres",
            autocommit=True,
            connect_timeout=10,
        ) as conn:
            conn.execute("create database test")
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class PgBouncer:
    """A PgBouncer we started in front of a PostgreSQL (loopback, trust auth)."""

    port: int
    dir: Path
    proc: subprocess.Popen[bytes]
    dbname: str

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{self.dbname}"

    def stop(self) -> None:
        _end_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def start_pgbouncer(
    postgres_url: str,
    pool_mode: str = "transaction",
    *,
    pool_size: int = 20,
    settings: str = "",
    timeout: float = 10,
) -> PgBouncer:
    """PgBouncer (Debian's ``pgbouncer``, /usr/sbin) in ``pool_mode`` on a free loopback port,
    in front of the server of ``postgres_url`` (its host, port and database), with its default
    settings (no ``max_prepared_statements``) but ``settings`` (ini lines). As root it runs as
    ``postgres`` (PgBouncer refuses root), its files in a directory chowned to that user."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    binary = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )
    if binary is None:
        raise ServerUnavailable("pgbouncer not found (make test installs it as root)")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            raise ServerUnavailable("running as root, PgBouncer needs the 'postgres' user")
        as_user = [runuser, "-u", owner.pw_name, "--"]
    target = conninfo_to_dict(postgres_url)
    dbname = str(target.get("dbname", "postgres"))
    directory = Path(tempfile.mkdtemp(prefix="allowance-pgbouncer-", dir="/tmp"))
    user = str(target.get("user", "postgres"))

    def attempt() -> PgBouncer:
        port = free_port()
        (directory / "userlist.txt").write_text(f'"{user}" ""\n')
        (directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={target.get('host', HOST)} port={target.get('port', 5432)}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {directory / 'userlist.txt'}\n"
            f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\n"
            "max_client_conn = 2000\nignore_startup_parameters = extra_float_digits\n"
            f"logfile = {directory / 'log'}\n{settings}"
        )
        if owner is not None:
            for path in (directory, *directory.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        proc = subprocess.Popen(
            [*as_user, binary, str(directory / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        bouncer = PgBouncer(port, directory, proc, dbname)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log = _tail(directory / "log")
                kind = _PortInUse if "Address already in use" in log else ServerError
                raise kind(f"pgbouncer exited ({proc.returncode}):\n{log}")
            try:
                with psycopg.connect(bouncer.url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return bouncer
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    _end_process(proc)
                    log = _tail(directory / "log")
                    raise ServerError(f"pgbouncer did not answer:\n{log}") from exc
                time.sleep(0.05)

    try:
        return _with_retries(attempt)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise


if __name__ == "__main__":  # a quick manual check: python tests/servers.py
    for start in (start_redis, start_redis_cluster, start_redis_sentinel, start_postgres):
        began = time.perf_counter()
        handle = start()
        print(f"{start.__name__}: {handle.url} in {time.perf_counter() - began:.2f}s")
        began = time.perf_counter()
        handle.stop()
        print(f"  stopped in {time.perf_counter() - began:.2f}s", file=sys.stderr)
