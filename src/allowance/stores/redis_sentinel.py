"""``redis+sentinel://[user:password@]host:26379[,host2:26379...]/SERVICE[/DB]``: the master
of SERVICE, found through Redis Sentinel (``redis.sentinel`` / ``redis.asyncio.sentinel``).

Connections to the master are made by sentinel-aware connections: each asks the sentinels for
the master's address when it connects. An open connection would stay with the old master
after a failover for as long as that one accepts writes: after ``SENTINEL FAILOVER`` the
sentinels demote it only some 8 s later, and every write it takes meanwhile is lost when it
resyncs from the new master (measured before this was handled: 11,000 of 15,600 grants in
3 s). So a ``MasterWatch`` thread asks the sentinels for the master every ``WATCH_EVERY``
seconds, and a connection to another server is dropped before its next command (the next
one finds the new master). READONLY from a demoted master means the script did not run
(``maybe_applied=False``).

That alone still lost the writes the old master took between the replica's promotion and the
sentinels saying so (about 1 s: they poll the promoted replica's role once a second; measured
~2,700 grants of 9,600). So the watch also listens to every sentinel's events: when one starts
a failover of the service (``+failover-state-select-slave``, a tick of its state machine
before it promotes a replica) the master is *fenced*: no command is sent to it until the
sentinels name the new master (``+switch-master``), the failover aborts (``-failover-abort-*``)
or ``FENCE_FOR`` passes. Meanwhile decisions fail with ``StoreUnavailable`` (nothing sent,
``maybe_applied=False``): under ``allow`` they are granted degraded and charged to the new
master. A graceful failover then loses nothing (tests/test_redis_sentinel.py,
``test_a_failover_under_load``); what is left after a crash is what the master acknowledged
but had not yet passed to the replica (replication is asynchronous; none measured on
loopback), with ~2.3 s of ``StoreUnavailable`` (down-after 1 s, then the election). The
counters fall back by what is lost: that much usage can be granted again.

Options: the URL's user and password are the master's; ``sentinel_username`` and
``sentinel_password`` are the sentinels' (none by default); the other query options are
redis-py's connection options, as for ``redis://``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis import connection as _connection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from allowance.errors import ConfigurationError, StoreUnavailable
from allowance.stores.redis_wire import DRIVER, no_retry

DEFAULT_PORT = 26379
WATCH_EVERY = 0.25  # seconds between two questions to the sentinels: who is the master?
FENCE_FOR = 10.0  # seconds a fence holds at most (a failover that neither ends nor aborts)
FAILOVER_STARTS = "+failover-state-select-slave"  # "master NAME IP PORT"
SWITCHED = "+switch-master"  # "NAME OLD-IP OLD-PORT NEW-IP NEW-PORT"
ABORTED = "-failover-abort-*"  # "master NAME IP PORT" (a pattern: several reasons)


def sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any], dict[str, Any]]:
    """(sentinels, service, master's connection options, sentinels' options) from the URL
    (``split_url``'s ``rest``: our own options already removed)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit():
            host, port = item.strip(), str(DEFAULT_PORT)
        host = host.strip("[]")  # an IPv6 address
        if not host:
            raise ConfigurationError(f"store: no sentinel host in {url!r}")
        sentinels.append((host, int(port)))
    names = [unquote(p) for p in parts.path.split("/") if p]
    if not names or len(names) > 2 or (len(names) == 2 and not names[1].isdigit()):
        raise ConfigurationError(
            f"store: expected redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE[/DB] (got {url!r})"
        )
    query = dict(parse_qsl(parts.query))
    sentinel_options: dict[str, Any] = {}
    for name in ("sentinel_username", "sentinel_password"):
        if name in query:
            sentinel_options[name.removeprefix("sentinel_")] = query.pop(name)
    db = names[1] if len(names) == 2 else "0"
    # redis-py's own parser turns the options into typed connection arguments
    login = f"{userinfo}@" if userinfo else ""
    parse_url: Any = _connection.parse_url  # untyped in redis-py
    master: dict[str, Any] = parse_url(f"redis://{login}localhost/{db}?{urlencode(query)}")
    master.pop("host", None)
    master.pop("port", None)
    return sentinels, names[0], master, sentinel_options


class MasterWatch:
    """The master's address as the sentinels last said, asked every ``WATCH_EVERY`` s in a
    daemon thread, and the master fenced while a sentinel fails it over (a listener thread per
    sentinel); the threads are restarted in a forked child, so that a decision never waits for
    them. ``current(conn)``: whether a connection still goes to that master and may be used."""

    def __init__(
        self, sentinels: list[tuple[str, int]], service: str, options: dict[str, Any]
    ) -> None:
        from redis import sentinel

        Sentinel: Any = sentinel.Sentinel  # untyped in redis-py
        self._sentinel = Sentinel(sentinels, sentinel_kwargs={**options, "retry": no_retry()})
        self._addresses = sentinels
        self._options = options
        self.service = service
        self.address: tuple[str, int] | None = None
        # the master a failover is under way from, and until when (monotonic) that holds
        self.fenced: tuple[tuple[str, int], float] | None = None
        self._stop = threading.Event()
        self._pid = 0
        self._guard = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._ask()  # before the first call (bounded by the timeouts; no answer: None)
        self._start()

    def _start(self) -> None:
        with self._guard:
            if self._pid == os.getpid() or self._stop.is_set():
                return
            self._pid = os.getpid()
            name = f"allowance-sentinel-{self.service}"
            self._threads = [threading.Thread(target=self._run, name=name, daemon=True)]
            self._threads += [
                threading.Thread(target=self._listen, args=address, name=name, daemon=True)
                for address in self._addresses
            ]
            for thread in self._threads:
                thread.start()

    def _run(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            self._ask()

    def _ask(self) -> None:
        try:
            host, port = self._sentinel.discover_master(self.service)
            self.address = (str(host), int(port))
        except RedisError:
            pass  # the last answer stands; connections find out by themselves

    def _listen(self, host: str, port: int) -> None:
        """Follow one sentinel's failover events, reconnecting while the watch runs."""
        import redis

        while not self._stop.is_set():
            client: Any = redis.Redis(host=host, port=port, **self._options)  # pubsub: untyped
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(FAILOVER_STARTS, SWITCHED)
                pubsub.psubscribe(ABORTED)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=WATCH_EVERY)
                    if message is not None:
                        self.heard(str(message["channel"], "utf-8"), message["data"])
            except (RedisError, OSError):
                self._stop.wait(WATCH_EVERY)  # the sentinel is away; the others are heard
            finally:
                client.close()

    def heard(self, channel: str, data: bytes) -> None:
        """One sentinel event (``channel``, its space-separated ``data``)."""
        words = str(data, "utf-8", "replace").split()
        if channel == SWITCHED and len(words) == 5 and words[0] == self.service:
            self.address = (words[3], int(words[4]))
            self.fenced = None
        elif len(words) == 4 and words[0] == "master" and words[1] == self.service:
            if channel == FAILOVER_STARTS:
                self.fenced = ((words[2], int(words[3])), time.monotonic() + FENCE_FOR)
            elif channel.startswith("-failover-abort-"):
                self.fenced = None

    def current(self, conn: Any) -> bool:
        if self._pid != os.getpid():
            self._start()
        here = (conn.host, conn.port)
        fenced = self.fenced
        if fenced is not None and fenced[0] == here and time.monotonic() < fenced[1]:
            return False
        address = self.address
        return address is None or here == address

    def close(self) -> None:
        self._stop.set()
        if self._pid == os.getpid():
            for thread in self._threads:
                thread.join(timeout=5)  # each waits at most WATCH_EVERY or a bounded call
        for client in self._sentinel.sentinels:
            client.close()


def sentinel_client(url: str, options: dict[str, Any]) -> tuple[Any, MasterWatch]:
    """A ``redis.Redis`` for the master (its pool sentinel-managed), and its watch."""
    from redis import sentinel

    Sentinel: Any = sentinel.Sentinel  # untyped in redis-py
    sentinels, service, master, sentinel_options = sentinel_parts(url)
    sentinel_options = {**_socket_options(options), **sentinel_options}
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_options, **options)
    return manager.master_for(service, **master), MasterWatch(sentinels, service, sentinel_options)


def lane_maker(watch: MasterWatch, pool: Any) -> Callable[[], Any]:
    """``make`` for an event loop's Lanes: plain asyncio connections to the master the watch
    knows, with the master's options. (Not redis-py's sentinel-managed ones, which ask the
    sentinels at each connect, over clients whose pools lost connected sockets under a
    failover's timeouts.)"""
    import redis.asyncio

    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    ssl = issubclass(pool.connection_class, redis.asyncio.SSLConnection)
    kind = redis.asyncio.SSLConnection if ssl else redis.asyncio.Connection
    options = {**kwargs, "retry": AsyncRetry(NoBackoff(), 0), "driver_info": DRIVER}

    def make() -> Any:
        address = watch.address
        if address is None:
            raise StoreUnavailable(
                f"redis: no master of {watch.service!r} known to the sentinels",
                maybe_applied=False,
            )
        conn = kind(host=address[0], port=address[1], **options)
        if not watch.current(conn):
            raise StoreUnavailable(
                f"redis: the master of {watch.service!r} is being failed over",
                maybe_applied=False,
            )
        return conn

    return make


def async_sentinel_client(url: str, options: dict[str, Any]) -> tuple[Any, MasterWatch]:
    """A ``redis.asyncio.Redis`` for the master (its pool sentinel-managed: sweeps), and a
    watch (decisions: ``lane_maker``)."""
    from redis.asyncio import sentinel

    Sentinel: Any = sentinel.Sentinel  # untyped in redis-py
    sentinels, service, master, sentinel_options = sentinel_parts(url)
    sentinel_options = {**_socket_options(options), **sentinel_options}
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_options, **options)
    sync_options = {k: v for k, v in sentinel_options.items() if k != "retry"}
    return manager.master_for(service, **master), MasterWatch(sentinels, service, sync_options)


def sentinel_clients(client: Any) -> list[Any]:
    """The clients a sentinel-managed master's pool asks the sentinels with (to close)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    return list(manager.sentinels) if manager is not None else []


def _socket_options(options: dict[str, Any]) -> dict[str, Any]:
    """The sentinels get the store's timeouts and no retries (a dead sentinel is skipped)."""
    keep = ("socket_timeout", "socket_connect_timeout", "retry")
    return {k: v for k, v in options.items() if k in keep}
