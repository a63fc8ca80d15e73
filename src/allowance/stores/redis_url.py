"""A Redis store URL taken apart (``redis://``, ``redis+cluster://``, ``redis+sentinel://``):
what redis-py gets, and the options that are ours (``prefix``, ``timeout``), shared by the
sync and async stores."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from allowance.errors import ConfigurationError
from allowance.stores.base import store_timeout

__all__ = ["RedisUrl", "split_url"]


@dataclass(frozen=True)
class RedisUrl:
    """Our URL taken apart: what redis-py gets, and our own options."""

    rest: str  # for redis-py's from_url (our options removed)
    prefix: str
    kind: str  # "redis", "cluster" or "sentinel"
    timeout: float  # seconds a call may take
    max_connections: int | None  # the URL's, if any


def split_url(url: str, timeout: float | None = None) -> RedisUrl:
    """Our URL's parts; ``timeout`` (``Limiter(timeout=)``) overrides ``?timeout=``."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    prefix = query.pop("prefix", "allowance")
    seconds = store_timeout(query.pop("timeout", None), timeout, url)
    kind = {"redis+cluster": "cluster", "redis+sentinel": "sentinel"}.get(parts.scheme, "redis")
    scheme = parts.scheme if kind == "redis" else "redis"
    limit = query.get("max_connections")
    try:
        max_connections = None if limit is None else int(limit)
    except ValueError:
        raise ConfigurationError(f"store: max_connections must be a number in {url!r}") from None
    rest = urlunsplit((scheme, parts.netloc, parts.path, urlencode(query), ""))
    return RedisUrl(rest, prefix, kind, seconds, max_connections)
