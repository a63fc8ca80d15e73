"""Events under a real race: 8 processes × 8 threads making Pro AI exports on one account
(30 a week) write exactly one ``usage.threshold`` and one ``usage.limit_reached`` for that
window, however the charges interleave: on one SQLite file, and on PostgreSQL, Redis and
Redis Cluster, whose one-step kernels leave the two crossing charges to the transaction path
(on Redis: the account's outbox, relayed to the log by whichever process wrote it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from allowance import Limiter
from conftest import STORE_FACTORIES
from races import race


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis", "redis_cluster"])
def test_racing_processes_write_each_event_once(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url = STORE_FACTORIES[kind](request, tmp_path)
    if kind == "postgres":
        url += "&pool_max=8"  # 8 processes × 8 connections stays under max_connections
    with Limiter(store=url) as setup:
        setup.set_account("acme", plan="pro")
        assert race(url, "export.ai", threads=8, share=kind != "sqlite") == 30  # 256 tries
        found = setup.events(account="acme")
    assert [(e.type, e.limit, e.data["used"]) for e in found] == [
        ("usage.threshold", "ai_exports", 24),
        ("usage.limit_reached", "ai_exports", 30),
    ]
