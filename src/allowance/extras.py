"""Optional dependencies: which extra of ``pip install 'allowance[...]'`` brings which module.

``pip install allowance`` is the library, the memory and SQLite stores, the HTTP client and
the CLI. The Redis and PostgreSQL stores and the HTTP service need drivers and a web stack an
application often pins itself, so they are extras (``redis``, ``postgres``, ``server``,
``all``: see pyproject.toml). Code that needs one imports it under ``needs(extra, what)``,
which turns the ImportError of a missing (or too old) package into a ``MissingExtra`` naming
the command that fixes it, instead of a traceback ending in ``No module named 'redis'``.

This module imports nothing optional: ``import allowance`` must work on the base install.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from allowance.errors import ConfigurationError

# the top-level modules each extra installs (what an ImportError's ``name`` starts with)
EXTRA_MODULES: dict[str, frozenset[str]] = {
    "redis": frozenset({"redis", "hiredis"}),
    "postgres": frozenset({"psycopg", "psycopg_binary", "psycopg_pool"}),
    "server": frozenset(
        {"fastapi", "starlette", "uvicorn", "uvloop", "httptools", "prometheus_client"}
    ),
}


class MissingExtra(ConfigurationError, ImportError):
    """A feature needs an extra that is not installed (or is installed at too old a version).

    A ``ConfigurationError`` (the CLI shows it as one line, exit status 1) and an
    ``ImportError`` (``try: import allowance.fastapi / except ImportError`` still works)."""

    def __init__(self, extra: str, what: str, cause: ImportError) -> None:
        self.extra = extra
        super().__init__(
            f"{what} needs the {extra!r} extra: pip install 'allowance[{extra}]' ({cause})"
        )


def _from_extra(exc: ImportError, extra: str) -> bool:
    top = (exc.name or "").partition(".")[0]
    # psycopg without psycopg[binary] or a libpq raises a bare ImportError from inside psycopg
    return top in EXTRA_MODULES[extra] or (extra == "postgres" and "pq wrapper" in str(exc))


@contextmanager
def needs(extra: str, what: str) -> Iterator[None]:
    """Imports in this block come from ``extra``; if one is missing, raise ``MissingExtra``
    saying that ``what`` (a store URL, a command, a module) needs it. ImportErrors of
    other modules (a bug of ours) propagate unchanged."""
    try:
        yield
    except ImportError as exc:
        if isinstance(exc, MissingExtra) or not _from_extra(exc, extra):
            raise
        raise MissingExtra(extra, what, exc) from None
