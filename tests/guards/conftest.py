"""The example app on a ``ManualClock`` limiter, served on a real loopback socket."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import httpx
import pytest

from allowance import AsyncLimiter, ManualClock

from .support import START, load_example, serve


@pytest.fixture(scope="session")
def example() -> ModuleType:
    return load_example()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "memory":
        return "memory://"
    return f"sqlite:///{tmp_path_factory.mktemp('guards')}/allowance.db"


@pytest.fixture
def client(example: ModuleType, clock: ManualClock, store_url: str) -> Iterator[httpx.Client]:
    """A client of the example app (demo accounts acme: Pro, corner-shop: Free, big-studio:
    Max) served by uvicorn on a free loopback port."""
    app = example.build_app(AsyncLimiter(store=store_url, clock=clock))
    with serve(app) as http:
        yield http
