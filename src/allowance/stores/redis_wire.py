"""Every use of redis-py's internals by the Redis stores, in one place: the connections the
stores drive themselves for decisions (``Link`` for a thread, ``Lanes`` for an event loop),
the deadline each call runs under, and how a failure becomes a ``StoreError``.

Why drive connections. redis-py's ``execute_command`` (pool checkout, lock, retry and
telemetry wrappers) costs as much CPU as a decision's own Python, has no per-call deadline,
and its async pools fail at once when they are full. Here a command is one packed write and
one read, under the time left of its call.

What is sent again. Nothing that may have run. A command the server may have received is
answered or fails with ``StoreUnavailable(maybe_applied=True)``: a lost reply of a script that
charges cannot be told from a command never run, and a resend would charge twice. What is
provably unsent is replaced silently, within the deadline:

* a connection found readable before the write (the server closed it: a restart, an idle
  timeout, ``CLIENT KILL``; or stray bytes) is dropped and a new one opened;
* a write that fails (``sendall`` raised: the command did not leave whole, and Redis never
  runs a partial command) is tried once more on a new connection.

A server that closes the connection between the readiness check and the write (a window of
microseconds) fails that call with ``maybe_applied=True``: from the client both orders look
alike.
"""

from __future__ import annotations

import asyncio
import math
import select
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
import redis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.driver_info import DriverInfo
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from allowance.errors import StoreError, StoreUnavailable

# error replies that say the command did not run (a replica refusing a write, a server
# loading its data set, a cluster without a master for the slot)
REFUSED = (ReadOnlyError, BusyLoadingError, ClusterDownError, TryAgainError)
# what CLIENT SETINFO says; given, so that redis-py does not look its own version up in the
# package metadata for each new connection (~0.2 ms)
DRIVER = DriverInfo(lib_version=redis.__version__)


def no_retry() -> Retry:
    """redis-py retries a command after a timeout or a lost connection by sending it again,
    which for a script that charges is a second charge: off everywhere."""
    return Retry(NoBackoff(), 0)


class Deadline:
    """The monotonic time by which one store call must be done."""

    __slots__ = ("end",)

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; StoreUnavailable when none are (nothing more is sent, so the call
        has not applied anything since its last answered command)."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise StoreUnavailable("redis: no answer within the timeout", maybe_applied=False)
        return left


def unavailable(exc: BaseException, *, applied: bool) -> StoreError:
    """The StoreError for a failure: StoreUnavailable when the server could not be reached or
    answered too late (a wrong password or database stays a plain StoreError)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        return StoreError(f"redis: {exc}")
    if isinstance(exc, ResponseError):
        return error_reply(exc)
    if isinstance(exc, REFUSED) or isinstance(exc.__context__, ReadOnlyError):
        # the server refused it (a sentinel-managed connection turns READONLY into a
        # ConnectionError "the previous master is now a slave")
        return StoreUnavailable(f"redis: {exc}", maybe_applied=False)
    if isinstance(exc, (ConnectionError, RedisTimeoutError, OSError, TimeoutError)):
        text = str(exc) or "no answer within the timeout"
        return StoreUnavailable(f"redis: {text}", maybe_applied=applied)
    return StoreError(f"redis: {exc}")


def error_reply(exc: ResponseError) -> StoreError:
    """The StoreError for an error the server answered (a script's error, NOSCRIPT...)."""
    if isinstance(exc, REFUSED) or str(exc).startswith("NOREPLICAS"):
        # refused before running: a replica, a loading server, a cluster that is down, a
        # master with too few replicas in sync (min-replicas-to-write); another may take it
        return StoreUnavailable(f"redis: {exc}", maybe_applied=False)
    return StoreError(f"redis: {exc}")


@contextmanager
def translating() -> Iterator[None]:
    """redis-py errors become ``StoreError`` at this one point (the cluster client's own
    errors are not ``RedisError`` subclasses); an unreachable or slow server is
    ``StoreUnavailable``."""
    try:
        yield
    except (RedisError, RedisClusterException) as exc:
        raise translate(exc) from exc


def translate(exc: RedisError | RedisClusterException) -> StoreError:
    """A redis-py error from a call whose command may have been sent."""
    return unavailable(exc, applied=True)


class Lua:
    """A script by its text and SHA1, sent as EVALSHA (loaded on NOSCRIPT)."""

    __slots__ = ("load", "sha", "text")

    def __init__(self, text: str, sha: str) -> None:
        self.text, self.sha = text, sha
        self.load = pack("SCRIPT", "LOAD", text)

    def packed(self, keys: list[str], argv: list[Any]) -> bytes:
        # hiredis packs in C: a seventh of redis-py's packer, a few µs a decision
        return pack("EVALSHA", self.sha, len(keys), *keys, *argv)


def pack(*args: Any) -> bytes:
    packed: bytes = hiredis.pack_command(args)
    return packed


# --- threads -----------------------------------------------------------------------------------


Check = Callable[[Any], bool]  # whether a connection still goes to the right server


class Link:
    """One connection a thread holds to one server, driven directly (see the module's
    docstring). Made from ``pool``'s connection class and arguments, outside the pool.
    ``check``: a connection it rejects (e.g. to a master that is one no longer) is dropped
    before its next command."""

    __slots__ = (
        "__weakref__",
        "_check",
        "_conn",
        "_connect_timeout",
        "_poll",
        "_read_timeout",
        "_sock",
    )

    def __init__(self, pool: Any, check: Check | None = None) -> None:
        self._check = check
        options = {**pool.connection_kwargs, "retry": no_retry(), "driver_info": DRIVER}
        self._conn = pool.connection_class(**options)
        self._read_timeout: float | None = self._conn.socket_timeout
        self._connect_timeout: float | None = self._conn.socket_connect_timeout
        self._sock: socket.socket | None = None
        self._poll = select.poll()

    def call(self, packed: bytes, deadline: Deadline) -> Any:
        """Send one packed command and read its reply. Error replies are raised as redis-py
        raises them (the connection stays); anything else is a StoreError."""
        conn = self._conn
        for attempt in (0, 1):
            sock = self._ready(deadline)
            sock.settimeout(deadline.left())  # the write, then each read of the reply
            try:
                sock.sendall(packed)
            except OSError as exc:  # the command did not leave whole: never run
                conn.disconnect()
                if attempt:
                    raise unavailable(exc, applied=False) from exc
                continue
            try:
                return conn.read_response()
            except REFUSED as exc:
                raise unavailable(exc, applied=False) from exc
            except ResponseError:
                raise
            except BaseException as exc:
                conn.disconnect()  # a reply may still be on its way
                if isinstance(exc, (RedisError, OSError)):
                    raise unavailable(exc, applied=True) from exc
                raise
        raise AssertionError("unreachable")

    def script(self, lua: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        packed = lua.packed(keys, argv)
        try:
            return self.call(packed, deadline)
        except NoScriptError:  # did not run: load it, then send it again
            self.call(lua.load, deadline)
            return self.call(packed, deadline)

    def _ready(self, deadline: Deadline) -> socket.socket:
        """The connection's socket, checked: one the server closed (readable before we wrote
        anything) is replaced. 0.5 µs a call (one poll)."""
        conn = self._conn
        sock: socket.socket | None = conn._sock
        if sock is not None:
            if sock is not self._sock:  # connected elsewhere (not by us): watch this one
                self._watch(sock)
            if not self._poll.poll(0) and (self._check is None or self._check(conn)):
                return sock
            conn.disconnect()
        left = deadline.left()
        # the connect and its handshake (CLIENT SETINFO, AUTH, SELECT) get the time left too
        conn.socket_timeout = _at_most(self._read_timeout, left)
        conn.socket_connect_timeout = _at_most(self._connect_timeout, left)
        try:
            conn.connect()
        except (RedisError, OSError) as exc:
            raise unavailable(exc, applied=False) from exc
        finally:
            conn.socket_timeout = self._read_timeout
            conn.socket_connect_timeout = self._connect_timeout
        if self._check is not None and not self._check(conn):
            conn.disconnect()  # e.g. the master that a failover is taking over from
            raise StoreUnavailable(
                f"redis: {conn.host}:{conn.port} is not to be written now (a failover)",
                maybe_applied=False,
            )
        sock = conn._sock
        assert sock is not None
        self._watch(sock)
        return sock

    def _watch(self, sock: socket.socket) -> None:
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        self._sock = sock

    def client_id(self, deadline: Deadline) -> int:
        """CLIENT ID of the connection (tests: to kill it from another client)."""
        return int(self.call(pack("CLIENT", "ID"), deadline))

    def close(self) -> None:
        self._conn.disconnect()


def _at_most(configured: float | None, left: float) -> float:
    return left if configured is None else min(configured, left)


class Links:
    """The Links of every thread of a store, by server, so ``close()`` reaches them all."""

    def __init__(self) -> None:
        self._all: weakref.WeakSet[Link] = weakref.WeakSet()

    def new(self, pool: Any, check: Check | None = None) -> Link:
        link = Link(pool, check)
        self._all.add(link)
        return link

    def close(self) -> None:
        for link in list(self._all):
            link.close()


# --- event loops -------------------------------------------------------------------------------


class Lanes:
    """Connections to one server (one Lanes per cluster node) for an event loop's decisions,
    each used by one command at a time and driven directly. At most ``size`` are open; a call
    beyond that waits for one to come back, first come first served, until its deadline (then
    ``StoreUnavailable(maybe_applied=False)``: nothing was sent). They stay open when a burst
    is over, as in a pool.

    ``make()`` returns a new, unconnected redis-py asyncio connection; ``check`` as for
    ``Link``."""

    def __init__(self, make: Callable[[], Any], size: int, check: Check | None = None) -> None:
        self._make = make
        self._check = check
        self._size = max(1, size)
        self._open = 0  # connections that exist, free or in use
        self._free: list[Any] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()  # each gets a connection or None
        self._late: set[asyncio.Future[Any]] = set()  # connects given up on, still running

    async def call(self, packed: bytes, deadline: Deadline) -> Any:
        for attempt in (0, 1):
            conn = await self._take(deadline)
            sent = False
            try:
                async with asyncio.timeout(deadline.left()):
                    writer = conn._writer
                    writer.write(packed)
                    await writer.drain()
                    sent = True
                    reply = await conn.read_response(timeout=math.inf)  # ours bounds it
            except REFUSED as exc:
                self._put(conn)
                raise unavailable(exc, applied=False) from exc
            except ResponseError:  # a whole error reply (NOSCRIPT, a script's error)
                self._put(conn)
                raise
            except BaseException as exc:  # lost, timed out or cancelled midway
                await self._drop(conn)
                if not sent and isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                    # the write failed: the command did not leave whole (a timeout or a
                    # cancel may leave bytes buffered, which the close still sends)
                    if attempt:
                        raise unavailable(exc, applied=False) from exc
                    continue
                if isinstance(exc, (RedisError, OSError)):
                    raise unavailable(exc, applied=True) from exc
                raise
            self._put(conn)
            return reply
        raise AssertionError("unreachable")

    async def script(self, lua: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        packed = lua.packed(keys, argv)
        try:
            return await self.call(packed, deadline)
        except NoScriptError:  # did not run: load it, then send it again
            await self.call(lua.load, deadline)
            return await self.call(packed, deadline)

    async def _take(self, deadline: Deadline) -> Any:
        """A connected connection, checked: one the server closed while it was free (its
        stream is at EOF, or holds stray bytes) is connected again; one ``check`` rejects
        (another server now) is replaced by a new one."""
        if self._free:
            conn = self._free.pop()
        elif self._open < self._size:
            self._open += 1
            conn = None
        else:
            conn = await self._wait(deadline)  # a connection, or None: a free place
        if conn is not None:
            fresh = self._check is None or self._check(conn)
            try:
                if fresh and conn.is_connected and not await conn.can_read():
                    return conn
            except (RedisError, OSError):
                pass
            await conn.disconnect()
            if not fresh:
                conn = None  # its place is taken by a new one
        if conn is None:
            try:
                conn = self._make()
            except BaseException:
                if not self._hand_over(None):
                    self._open -= 1
                raise
        # the connect runs in a task of its own, which a deadline does not cancel: cancelling
        # one as it completes loses the new socket (asyncio drops the result); one that
        # finishes late joins the free connections (it is bounded by the socket timeouts)
        connecting = asyncio.ensure_future(conn.connect())
        try:
            async with asyncio.timeout(deadline.left()):
                await asyncio.shield(connecting)
        except BaseException as exc:
            if connecting.done():
                await self._drop(conn)
            else:
                self._late.add(connecting)
                connecting.add_done_callback(lambda done: self._connected_late(conn, done))
            if isinstance(exc, (RedisError, OSError, TimeoutError)):
                raise unavailable(exc, applied=False) from exc
            raise
        return conn

    def _connected_late(self, conn: Any, done: asyncio.Future[Any]) -> None:
        self._late.discard(done)
        if done.cancelled() or done.exception() is not None:
            dropping = asyncio.ensure_future(self._drop(conn))
            self._late.add(dropping)
            dropping.add_done_callback(self._late.discard)
        else:
            self._put(conn)

    async def _wait(self, deadline: Deadline) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            async with asyncio.timeout(deadline.left()):
                return await future
        except BaseException as exc:
            if future.done() and not future.cancelled():  # came too late for us: pass it on
                got = future.result()
                if got is not None:
                    self._put(got)
                elif not self._hand_over(None):
                    self._open -= 1
            else:
                future.cancel()
            if isinstance(exc, TimeoutError):
                raise StoreUnavailable(
                    "redis: no connection free within the timeout", maybe_applied=False
                ) from None
            raise

    def _hand_over(self, conn: Any) -> bool:
        """Give ``conn`` (or a free place, None) to the first call waiting, if any."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(conn)
                return True
        return False

    def _put(self, conn: Any) -> None:
        if not self._hand_over(conn):
            self._free.append(conn)

    async def _drop(self, conn: Any) -> None:
        try:
            await conn.disconnect(nowait=True)
        finally:
            if not self._hand_over(None):
                self._open -= 1

    async def close(self) -> None:
        while self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
        free, self._free = self._free, []
        for conn in free:
            self._open -= 1
            await conn.disconnect()


def slot_master(client: Any, key: str) -> Any:
    """The node RedisCluster's slot map says serves ``key`` (sync or async client): no public
    call gives it without sending a command. Raises when no node serves the slot."""
    return client.nodes_manager.get_node_from_slot(key_slot(key.encode()))


def reread_slot_map(client: Any) -> Any:
    """RedisCluster's slot map read again from the nodes (an awaitable for the async one)."""
    return client.nodes_manager.initialize()


def lane_maker(connection_class: Any, kwargs: dict[str, Any]) -> Callable[[], Any]:
    """``make`` for Lanes: new connections of that class, with redis-py's retries off."""
    options = {**kwargs, "retry": AsyncRetry(NoBackoff(), 0), "driver_info": DRIVER}
    return lambda: connection_class(**options)
