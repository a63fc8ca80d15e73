"""``service``: one real ``allowance serve`` per store and test module (tests use their own
account ids). SQLite always; Redis and PostgreSQL through the session's server fixtures
(started, or skipped with the reason, by tests/conftest.py)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from .service import START, Service


def _store(request: pytest.FixtureRequest, kind: str, tmp: str) -> str:
    name = "t" + secrets.token_hex(6)
    if kind == "sqlite":
        return f"sqlite:///{tmp}/allowance.db"
    if kind == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix={name}"
    url: str = request.getfixturevalue("postgres_url")
    return f"{url}{'&' if '?' in url else '?'}schema={name}"


def serve_policy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    policy: Path,
    start: str = START,
) -> Iterator[Service]:
    """A module's ``allowance serve --policy`` on the store kind of ``request.param``."""
    tmp: Path = tmp_path_factory.mktemp(f"{policy.stem}-{request.param}")
    store = _store(request, request.param, str(tmp))
    served = Service.start(store, tmp, "--policy", str(policy), start=start)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module", params=["sqlite", "redis", "postgres"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    served = Service.start(_store(request, request.param, str(tmp)), tmp)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def sqlite_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service on SQLite, for tests about HTTP itself rather than stores."""
    tmp = tmp_path_factory.mktemp("serve")
    served = Service.start(f"sqlite:///{tmp}/allowance.db", tmp)
    try:
        yield served
    finally:
        served.stop()
