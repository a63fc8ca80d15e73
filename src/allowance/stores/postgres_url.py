"""The PostgreSQL store's URL: libpq's connection string with our own options taken out
(``schema``, ``pool_min``, ``pool_max``, ``timeout``, ``prepare``), each checked."""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from allowance.errors import ConfigurationError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # unquoted, within NAMEDATALEN
OWN_OPTIONS = ("schema", "pool_min", "pool_max", "timeout", "prepare")


def check_settings(schema: str, pool_min: int, pool_max: int) -> None:
    if not IDENTIFIER.fullmatch(schema):
        raise ConfigurationError(
            f"store: schema must be a plain SQL identifier (letters, digits, _), got {schema!r}"
        )
    if not 0 <= pool_min <= pool_max or pool_max < 1:
        raise ConfigurationError(
            f"store: need 0 <= pool_min <= pool_max and pool_max >= 1"
            f" (got pool_min={pool_min}, pool_max={pool_max})"
        )


class Settings(NamedTuple):
    conninfo: str  # for libpq: our own options removed
    schema: str
    pool_min: int
    pool_max: int
    timeout: str | None  # the URL's text, for ``store_timeout``
    prepare: bool  # the fast path prepares its statements (false: behind a PgBouncer)


def parse_url(url: str) -> Settings:
    """Our URL's settings: the libpq conninfo and our own options."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(f"store: not a postgresql:// URL: {redact(url)!r}")
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in OWN_OPTIONS:
            ours[key] = value
        else:
            theirs.append((key, value))
    if not any(key == "connect_timeout" for key, _ in theirs):
        theirs.append(("connect_timeout", "10"))  # libpq's default is to wait forever
    # only the query is rewritten: urlunsplit would drop the "//" of postgresql:///db
    conninfo = url.split("?", 1)[0] + "?" + urlencode(theirs, quote_via=quote)
    try:
        conninfo_to_dict(conninfo)  # libpq's own check of its options
    except psycopg.Error as exc:
        raise ConfigurationError(f"store: {exc} in {redact(url)!r}") from exc
    pool_min, pool_max = (
        _whole(option, ours.get(option, default), url)
        for option, default in (("pool_min", "1"), ("pool_max", "10"))
    )
    prepare = ours.get("prepare", "true").lower()
    if prepare not in ("true", "false"):
        raise ConfigurationError(
            f"store: prepare must be true or false, got {prepare!r} in {redact(url)!r}"
        )
    schema = ours.get("schema", "allowance")
    return Settings(conninfo, schema, pool_min, pool_max, ours.get("timeout"), prepare == "true")


def _whole(option: str, text: str, url: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ConfigurationError(
            f"store: {option} must be a whole number, got {text!r} in {redact(url)!r}"
        )
    return int(text)


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
