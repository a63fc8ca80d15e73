"""A key table made before keys could be bound to accounts gets its ``accounts`` column on
first use; its keys act for every account, as they did."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import psycopg
import pytest

from allowance.keys import digest, new_key
from allowance.stores import store_from_url

OLD = (
    "CREATE TABLE {t} (id text PRIMARY KEY, digest text NOT NULL UNIQUE, scope text NOT NULL,"
    " name text NOT NULL, created_at double precision NOT NULL, last_used_at double precision,"
    " revoked_at double precision)"
)
OLD_KEY = "INSERT INTO {t} VALUES ('key_old', '{d}', 'read', 'old', 1.0, NULL, NULL)"


def check_upgrade(url: str) -> None:
    for _ in range(2):  # the second start finds the column there
        store = store_from_url(url)
        try:
            ring = store.keyring()
            old = ring.find(digest("old-secret"))
            assert old is not None and old.accounts is None and old.acts_for("anyone")
            bound, secret = new_key("read", "", 2.0, ["acme"])
            ring.add(bound)
            found = ring.find(digest(secret))
            assert found is not None and found.accounts == ("acme",)
        finally:
            store.close()


def test_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD.format(t="api_keys"))
        conn.execute(OLD_KEY.format(t="api_keys", d=digest("old-secret")))
    check_upgrade(f"sqlite:///{path}")


def test_postgres(postgres_url: str, request: pytest.FixtureRequest) -> None:
    schema = "up_" + secrets.token_hex(4)
    table = f'"{schema}".api_keys'
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(OLD.format(t=table))
        conn.execute(OLD_KEY.format(t=table, d=digest("old-secret")))
    request.addfinalizer(lambda: _drop(postgres_url, schema))
    check_upgrade(f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={schema}")


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
