"""SQLite keeps everything across processes' store instances, and bad URLs are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from allowance import ConfigurationError, Limiter, ManualClock


def test_usage_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    clock = ManualClock("2026-11-23T15:10:00Z")
    with Limiter(store=url, clock=clock) as lim:
        lim.set_account("a", plan="pro", seats=2)
        lim.consume("a", "export.ai", 7)
        r = lim.reserve("a", "export.ai", 3)
        lim.consume("a", "export.ai", 1, idempotency_key="k")
    with Limiter(store=url, clock=clock) as lim:
        assert lim.get_account("a").seats == 2
        assert next(m.used for m in lim.usage("a") if m.limit == "ai_exports") == 11
        lim.consume("a", "export.ai", 1, idempotency_key="k")
        assert r.id is not None
        lim.release(r.id)
        assert next(m.used for m in lim.usage("a") if m.limit == "ai_exports") == 8


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite:////no/such/dir/a.db",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?journal=off",
        "mongodb://localhost",
        "allowance.db",
    ],
)
def test_bad_store_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        Limiter(store=url)
