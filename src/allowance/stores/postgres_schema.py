"""The PostgreSQL schema's creation and version check: the sync store's first connection does
it (``postgres.py``; the async twin relies on it), one process at a time, under an advisory
lock (``CREATE ... IF NOT EXISTS`` alone is not safe when two run at once: both may try to
insert the same catalog row). The schema is versioned in ``schema_version``; a newer one is
refused."""

from __future__ import annotations

import zlib
from typing import Any

import psycopg

from allowance.errors import ConfigurationError
from allowance.stores.postgres_common import LOCK_NAMESPACE, render
from allowance.stores.postgres_sql import DDL, SCHEMA_VERSION


def migrate(conn: psycopg.Connection[Any], schema: str, q: dict[str, str]) -> None:
    """Create ``schema`` or bring it up to ``SCHEMA_VERSION`` (``q``: its rendered queries)."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            (LOCK_NAMESPACE, zlib.crc32(schema.encode()) - 2**31),  # to signed int4
        )
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_tables"
            " WHERE schemaname = %s AND tablename = 'schema_version'",
            (schema,),
        ).fetchone()
        version = conn.execute(q["version"]).fetchone() if found else None
        current = version[0] if version is not None and version[0] is not None else 0
        if current > SCHEMA_VERSION:
            raise ConfigurationError(
                f"store: schema {schema!r} is at version {current}, written by a newer"
                f" allowance (this one knows up to {SCHEMA_VERSION})"
            )
        if current < SCHEMA_VERSION:
            for statement in DDL:
                conn.execute(render(statement, schema))
            conn.execute(q["set_version"], (SCHEMA_VERSION,))
