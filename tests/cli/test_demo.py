"""``allowance demo``: the seed's Monday in a real store, ending now."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from allowance import Limiter

from .support import Run


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'demo.db'}"
    name = "demo" + secrets.token_hex(4)
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix={name}"
    url: str = request.getfixturevalue("postgres_url")
    return f"{url}{'&' if '?' in url else '?'}schema={name}"


def test_the_demo_account_stands_where_the_seeds_story_does(run: Run, store: str) -> None:
    loaded = run("demo", "--store", store)
    assert loaded.exit_code == 0, loaded.output
    assert "demo account 'demo'" in loaded.stdout
    assert "You have reached your daily limit of 30 generations" in loaded.stdout
    with Limiter(store=store) as lim:  # the real clock now
        now = datetime.now(UTC)
        daily = next(m for m in lim.usage("demo") if m.limit == "transform_daily")
        assert (daily.used, daily.max) == (30, 30)
        assert daily.resets_at is not None
        # opened 25 minutes before the story's end (now): closes 23 h 35 min from now
        left = daily.resets_at - now
        assert timedelta(hours=23, minutes=34) < left <= timedelta(hours=23, minutes=35, seconds=1)
        refused = lim.consume("demo", "transform.product_staging")
        assert not refused.allowed and refused.limit == "transform_daily"
        assert refused.upgrade == "max" and refused.resets_at == daily.resets_at
        assert lim.get_account("demo").plan == "pro"
    again = run("demo", "--store", store)
    assert again.exit_code == 1 and "has an account 'demo' already" in again.stderr
    other = run("demo", "--store", store, "--account", "demo-2")
    assert other.exit_code == 0, other.output
