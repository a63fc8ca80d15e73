"""Shared fixtures. ``store_url`` runs a test once per store; later stores (Redis, PostgreSQL)
join by adding a factory to STORE_FACTORIES."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from allowance import Limiter, ManualClock

START = "2026-11-23T15:10:00Z"  # a Monday, the seed's first generation


def _memory(tmp: Path) -> str:
    return "memory://"


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'allowance.db'}"


STORE_FACTORIES: dict[str, Callable[[Path], str]] = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store's URL; one test run per store kind."""
    return STORE_FACTORIES[request.param](tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def limiter(store_url: str, clock: ManualClock) -> Iterator[Limiter]:
    """A Limiter with the built-in policy on a fresh store, its clock at Monday 15:10 UTC."""
    lim = Limiter(store=store_url, clock=clock)
    yield lim
    lim.close()
