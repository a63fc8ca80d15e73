"""Events under a real race: 8 processes × 8 threads making Pro AI exports on one account
(30 a week) write exactly one ``usage.threshold`` and one ``usage.limit_reached`` for that
window, however the charges interleave: on one SQLite file, and on PostgreSQL, Redis and
Redis Cluster, whose one-step kernels leave the two crossing charges to the transaction path
(on Redis: the account's outbox, relayed to the log by whichever process wrote it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from allowance import AsyncLimiter, Limiter
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


def test_racing_async_plan_changes_name_the_plan_they_replaced(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The async PostgreSQL store's put_account, 8 tasks racing (its sync twin: the events
    conformance test)."""
    url = STORE_FACTORIES["postgres"](request, tmp_path) + "&pool_max=8"
    plans = ["free", "pro", "max"]

    async def run() -> tuple[list[dict[str, object]], str]:
        async with AsyncLimiter(store=url) as lim:
            await lim.set_account("acme", "pro")

            async def change(i: int) -> None:
                for k in range(12):
                    await lim.set_account("acme", plans[(i + k) % 3])

            await asyncio.gather(*(change(i) for i in range(8)))
            found = [e.data for e in await lim.events(account="acme", limit=1000)]
            account = await lim.get_account("acme")
            assert account is not None
            return found, account.plan

    found, plan = asyncio.run(run())
    assert found
    chain = ["pro", *(str(d["to"]) for d in found)]
    assert [d["from"] for d in found] == chain[:-1] and chain[-1] == plan
