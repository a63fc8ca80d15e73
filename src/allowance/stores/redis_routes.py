"""Which connection a sync Redis store's command goes over (``redis.py``): a link per thread
and server (``redis_wire.Link``), to the only server or, on Redis Cluster, to the master of
the key's slot, with MOVED/ASK followed through RedisCluster and the slot map reread after a
failure. The async store's twin is its lanes (``redis_async.py``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import redis.cluster
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from allowance.errors import StoreError
from allowance.stores.redis_wire import (
    Deadline,
    Link,
    Links,
    Lua,
    error_reply,
    pack,
    reread_slot_map,
    slot_master,
    translating,
    unavailable,
)

if TYPE_CHECKING:
    from allowance.stores.redis_sentinel import MasterWatch

__all__ = ["REFRESH_EVERY", "Routes"]

# replies that say the script did not run on that node and name the one that runs it
REDIRECTED = (MovedError, AskError)
REFRESH_EVERY = 0.25  # seconds: at most one reread of the cluster's slot map this often


class Routes:
    """The links of one store: ``client`` is its redis-py client (RedisCluster: the slot map
    and the redirections are its), ``watch`` the sentinels' master (redis+sentinel://)."""

    def __init__(self, client: Any, watch: MasterWatch | None) -> None:
        self.client = client
        self.cluster = isinstance(client, redis.cluster.RedisCluster)
        self.links = Links()
        self._watch = watch
        self._held = threading.local()  # .links: server (None: the only one) -> Link; .pid
        self._stale_map = 0.0  # monotonic time the slot map was found stale, 0: it is not

    def here(self) -> dict[str | None, Link]:
        """This thread's links; after a fork the child makes its own."""
        held = self._held
        links: dict[str | None, Link] | None = getattr(held, "links", None)
        if links is None or held.pid != os.getpid():
            links = held.links = {}
            held.pid = os.getpid()
        return links

    def run(self, script: Lua, keys: list[str], argv: list[Any], deadline: Deadline) -> Any:
        """EVALSHA of ``script`` on the server of ``keys`` (one slot) over this thread's link."""
        return self._on_link(
            keys[0],
            lambda link: link.script(script, keys, argv, deadline),
            lambda client: _evalsha(client, script, keys, argv),
        )

    def command(self, deadline: Deadline, *args: Any) -> Any:
        """A command whose first argument after its name is a key of the account."""
        packed = pack(*args)
        return self._on_link(
            args[1],
            lambda link: link.call(packed, deadline),
            lambda client: client.execute_command(*args),
        )

    def _on_link(
        self, key: str, send: Callable[[Link], Any], redirected: Callable[[Any], Any]
    ) -> Any:
        links = self.here()
        if not self.cluster:
            link = links.get(None)
            if link is None:
                check = None if self._watch is None else self._watch.current
                link = links[None] = self.links.new(self.client.connection_pool, check)
            try:
                return send(link)
            except ResponseError as exc:
                raise error_reply(exc) from exc
        return self._on_cluster_link(links, key, send, redirected)

    def _on_cluster_link(
        self,
        links: dict[str | None, Link],
        key: str,
        send: Callable[[Link], Any],
        redirected: Callable[[Any], Any],
    ) -> Any:
        """On the master that serves the key's slot, over a link this thread holds to it
        (RedisCluster's own routing, per-node pool and bookkeeping on every call cost more
        than the decision's Python). The slot map is RedisCluster's. A reply saying the
        command did not run there (MOVED or ASK after a resharding) drops the link and sends
        it again through RedisCluster (``redirected``), which follows the redirection and
        refreshes its slot map; the next call then finds the new owner. A failure that may
        come after the script charged (a timeout, a connection lost midway) is not sent
        again; it, or a node that is down, marks the slot map for a reread (at most every
        ``REFRESH_EVERY`` s) before the next call."""
        if self._stale_map and time.monotonic() - self._stale_map >= REFRESH_EVERY:
            self._stale_map = 0.0
            with suppress(RedisError, RedisClusterException):
                reread_slot_map(self.client)
        try:
            node = slot_master(self.client, key)
        except (RedisError, RedisClusterException) as exc:  # no node serves the slot
            self._stale_map = self._stale_map or time.monotonic()
            raise unavailable(exc, applied=False) from exc
        link = links.get(node.name)
        if link is None:
            pool = self.client.get_redis_connection(node).connection_pool
            link = links[node.name] = self.links.new(pool)
        try:
            return send(link)
        except REDIRECTED:
            links.pop(node.name, None)
            link.close()
        except ResponseError as exc:
            raise error_reply(exc) from exc
        except StoreError:
            self._stale_map = self._stale_map or time.monotonic()
            raise
        with translating():
            return redirected(self.client)


def _evalsha(client: Any, script: Lua, keys: list[str], argv: list[Any]) -> Any:
    """EVALSHA through a redis-py client, loading the script on NOSCRIPT."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *argv)
    except NoScriptError:
        client.script_load(script.text)
        return client.evalsha(script.sha, len(keys), *keys, *argv)
