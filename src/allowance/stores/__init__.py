"""Stores by URL scheme: ``store_from_url("sqlite:///path.db")``."""

from __future__ import annotations

from urllib.parse import urlsplit

from allowance.errors import ConfigurationError
from allowance.extras import needs
from allowance.stores.base import Store
from allowance.view import AccountView

__all__ = ["AccountView", "Store", "store_from_url"]


def store_from_url(url: str, *, timeout: float | None = None) -> Store:
    """The store for ``url``: memory://, sqlite:///path.db, redis://host:port/db,
    redis+cluster://host:port, redis+sentinel://host:port[,host:port]/SERVICE/db,
    postgresql://user@host:port/db. ``timeout`` (seconds) bounds
    every call to a networked store; it overrides the URL's ``?timeout=`` (default
    ``DEFAULT_TIMEOUT``). The Redis and PostgreSQL stores need the ``redis`` / ``postgres``
    extra; without it this raises ``MissingExtra`` (a ``ConfigurationError``) naming it."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"store: expected a URL such as memory:// or sqlite:///allowance.db (got {url!r})"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from allowance.stores.memory import MemoryStore

        return MemoryStore.from_url(url)
    if scheme == "sqlite":
        from allowance.stores.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if scheme in ("redis", "rediss", "redis+cluster", "redis+sentinel"):
        with needs("redis", f"store {scheme}://"):
            from allowance.stores.redis import RedisStore

        return RedisStore.from_url(url, timeout=timeout)
    if scheme in ("postgresql", "postgres"):
        with needs("postgres", f"store {scheme}://"):
            from allowance.stores.postgres import PostgresStore

        return PostgresStore.from_url(url, timeout=timeout)
    raise ConfigurationError(
        f"store: unknown scheme {scheme!r} in {url!r}; known: memory://, sqlite:///PATH,"
        " redis://HOST:PORT/DB, redis+cluster://HOST:PORT,"
        " redis+sentinel://HOST:PORT[,HOST:PORT]/SERVICE/DB, postgresql://..."
    )
