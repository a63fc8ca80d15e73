"""Real threads and real processes race on one account: exactly the cap is granted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from allowance import Limiter, parse_policy
from conftest import STORE_FACTORIES
from races import race, race_by_feature


def test_threads_on_one_store(store_url: str) -> None:
    setup = Limiter(store=store_url)
    setup.set_account("acme", plan="pro")
    barrier = threading.Barrier(16)
    granted: list[int] = []
    lock = threading.Lock()
    shared = setup if store_url.startswith("memory") else None

    def run() -> None:
        lim = shared or Limiter(store=store_url)
        try:
            barrier.wait()
            mine = sum(lim.consume("acme", "export.ai").granted for _ in range(5))
        finally:
            if lim is not shared:
                lim.close()
        with lock:
            granted.append(mine)

    threads = [threading.Thread(target=run) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(granted) == 30
    meter = next(m for m in setup.usage("acme") if m.limit == "ai_exports")
    setup.close()
    assert meter.used == 30


# one pooled limit over three tools: the per-minute limit of 2 bites first
POOLED = "transform.virtual_model,transform.product_staging,transform.product_beautifier"
CASES = pytest.mark.parametrize(
    ("features", "limit", "cap"),
    [("export.ai", "ai_exports", 30), (POOLED, "transform_rate", 2)],
    ids=["weekly", "pooled"],
)


@pytest.mark.slow
@CASES
def test_processes_on_one_sqlite_file(tmp_path: Path, features: str, limit: str, cap: int) -> None:
    """8 processes × 8 threads, each thread with its own Limiter, on one file."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    setup = Limiter(store=url)
    setup.set_account("acme", plan="pro")
    assert race(url, features, threads=8, share=False) == cap  # 256 tries
    meter = next(m for m in setup.usage("acme") if m.limit == limit)
    assert meter.used == cap


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "redis_cluster", "postgres"])
@CASES
def test_processes_on_a_server_store(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kind: str,
    features: str,
    limit: str,
    cap: int,
) -> None:
    """8 processes × 16 threads, each thread with its own Limiter, time from the store."""
    url = STORE_FACTORIES[kind](request, tmp_path)
    if kind == "postgres":
        url += "&pool_max=8"  # 8 processes × 8 connections stays under max_connections
    setup = Limiter(store=url)
    setup.set_account("acme", plan="pro")
    assert race(url, features, threads=16, share=True) == cap  # 512 tries
    meter = next(m for m in setup.usage("acme") if m.limit == limit)
    assert meter.used == cap
    setup.close()


# a pool of credits that three features draw on at different costs, beside a limit of its own
CREDIT_POOL = """\
version: 1
plans: [free, pro]
features:
  ai.generate: {title: AI generation}
  ai.video: {title: AI video}
  ai.upscale: {title: AI upscale}
limits:
  ai_credits:
    label: AI credits
    features: [ai.generate, ai.video, ai.upscale]
    costs: {ai.generate: 3, ai.video: 10}
    window: {type: calendar, unit: month}
    plans: {free: 0, pro: 200}
  videos:
    features: [ai.video]
    window: {type: anchored, length: 24h}
    plans: {free: 0, pro: 6}
"""
CREDIT_COSTS = {"ai.generate": 3, "ai.video": 10, "ai.upscale": 1}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis_cluster", "postgres"])
def test_processes_sharing_a_credit_pool_grant_exactly_the_pool(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """8 processes × 16 threads mixing three features of different costs on one pool: what was
    granted is what the pool counts (nothing lost, nothing charged twice), never above it, and
    the pool's last credits are still there to take."""
    policy_file = tmp_path / "credits.yaml"
    policy_file.write_text(CREDIT_POOL)
    policy = parse_policy(CREDIT_POOL, "credits")
    url = STORE_FACTORIES[kind](request, tmp_path)
    if kind == "postgres":
        url += "&pool_max=8"
    threads = 8 if kind == "sqlite" else 16
    with Limiter(policy, store=url) as setup:
        setup.set_account("acme", plan="pro")
        granted = race_by_feature(
            url, ",".join(CREDIT_COSTS), threads=threads, share=kind != "sqlite", policy=policy_file
        )
        charged = sum(CREDIT_COSTS[f] * n for f, n in granted.items())
        meters = {m.limit: m.used for m in setup.usage("acme")}
        assert meters["ai_credits"] == charged <= 200
        assert meters["videos"] == granted["ai.video"] <= 6
        rest = 0
        while setup.consume("acme", "ai.upscale").allowed:
            rest += 1
        assert charged + rest == 200
