"""The start-up check of a Redis server's settings that would lose or evict usage.

Two settings turn a Redis into a place where recorded usage can vanish while every decision
looks healthy: no persistence at all (``save ""`` and ``appendonly no``: a restart forgets
every counter, so the month starts again) and an eviction policy that may drop our keys
under memory pressure (``allkeys-*`` drops any key; ``volatile-*`` drops keys with a TTL,
which every counter has). Neither is an error (a cache-only Redis is a choice), so the
operator is told once, in one line naming the server and the setting, when the store opens.

``CONFIG`` is often disabled on managed Redis; then only what ``INFO`` shows is judged (the
eviction policy, and the append-only file), never a guess. The check never fails the store:
a server that does not answer is the breaker's business, not this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("allowance.store")
SAFE_EVICTION = "noeviction"


def risks(
    memory: Mapping[str, Any], persistence: Mapping[str, Any], config: Mapping[str, Any]
) -> list[str]:
    """What in one server's settings can lose usage: ``memory`` and ``persistence`` are its
    ``INFO`` sections, ``config`` what ``CONFIG GET save appendonly`` answered (empty when
    refused)."""
    found = []
    policy = str(memory.get("maxmemory_policy", SAFE_EVICTION))
    if policy.startswith("allkeys-"):
        found.append(f"maxmemory-policy {policy} may evict live counters")
    elif policy.startswith("volatile-") and int(memory.get("maxmemory", 0) or 0) > 0:
        found.append(f"maxmemory-policy {policy} may evict live counters (they carry a TTL)")
    aof = str(config.get("appendonly", "yes" if persistence.get("aof_enabled") else "")).lower()
    if "save" in config and config["save"] in ("", None) and aof in ("no", ""):
        found.append('no persistence (save "" and appendonly no): a restart forgets all usage')
    return found


def warning_line(client: Any, *, cluster: bool) -> str | None:
    """The one warning line for a store's server(s), or None when nothing is at risk (or the
    server cannot be asked now)."""
    try:
        servers = _settings(client, cluster)
    except RedisError as exc:
        log.debug("could not read the Redis settings: %s", exc)
        return None
    named = [f"{name}: {'; '.join(found)}" for name, found in servers if found]
    if not named:
        return None
    return "Redis may lose recorded usage: " + " | ".join(named)


def _settings(client: Any, cluster: bool) -> list[tuple[str, list[str]]]:
    if cluster:
        # each command once to every primary through the cluster's own pools: a dict by node
        every = {"target_nodes": client.PRIMARIES}
        memory, persistence = client.info("memory", **every), client.info("persistence", **every)
        config = _config(lambda name: client.config_get(name, **every))
        return [
            (name, risks(memory[name], persistence.get(name, {}), config.get(name, {})))
            for name in sorted(memory)
        ]
    pool = client.connection_pool
    service = getattr(pool, "service_name", None)  # a sentinel-managed master
    kwargs = pool.connection_kwargs
    name = f"master of {service}" if service else f"{kwargs.get('host')}:{kwargs.get('port')}"
    plain = _config(lambda key: {name: client.config_get(key)})
    return [(name, risks(client.info("memory"), client.info("persistence"), plain.get(name, {})))]


def _config(get: Any) -> dict[str, dict[str, Any]]:
    """``CONFIG GET save`` and ``appendonly`` by node, or nothing where CONFIG is renamed or
    refused (managed Redis): then INFO alone is judged."""
    try:
        save, appendonly = get("save"), get("appendonly")
    except RedisError:
        return {}
    return {name: save[name] | appendonly.get(name, {}) for name in save}


_told: set[str] = set()  # store URLs already checked in this process


def warn_once(url: str, client: Any, *, cluster: bool) -> None:
    """Log the warning line for ``url``'s server(s) the first time this process opens it."""
    if url in _told:
        return
    _told.add(url)
    line = warning_line(client, cluster=cluster)
    if line is not None:
        log.warning("%s", line)
