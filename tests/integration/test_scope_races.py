"""Real processes race on counters kept per user: 8 processes × 16 threads (8 on SQLite), each
thread with its own Limiter, requests by several users at once. What is granted is exactly
what every scope counts: the space's pool, each member's own count, each user's count across
spaces; never above a cap, nothing lost, nothing charged twice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from allowance import Limiter, parse_policy
from conftest import STORE_FACTORIES
from races import race_by_feature

MEMBERS_RACE = """\
version: 1
plans: [free, team]
features:
  ai.generate: {title: AI generation}
  ai.upscale: {title: AI upscale}
  export: {title: Export}
limits:
  space_credits:
    label: Space credits
    features: [ai.generate, ai.upscale]
    costs: {ai.generate: 3}
    window: {type: calendar, unit: month}
    plans: {free: 0, team: 150}
  generations_per_member:
    scope: user
    features: [ai.generate]
    window: {type: anchored, length: 24h}
    plans: {free: 0, team: 9}
"""
# and a count of each user across spaces
SCOPED_RACE = (
    MEMBERS_RACE
    + """\
  exports_anywhere:
    scope: user_global
    features: [export]
    window: {type: calendar, unit: week}
    plans: {free: 0, team: 40}
"""
)
COSTS = {"ai.generate": 3, "ai.upscale": 1}
MEMBERS = [f"m{i}" for i in range(6)]
SPACES = [f"space{i}" for i in range(4)]


def setup(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, text: str
) -> tuple[str, Path, int]:
    """The store's URL, the policy file (of ``text``) and the threads per process."""
    policy_file = tmp_path / "scoped.yaml"
    policy_file.write_text(text)
    url = STORE_FACTORIES[kind](request, tmp_path)
    if kind == "postgres":
        url += "&pool_max=8"  # 8 processes × 8 connections stays under max_connections
    return url, policy_file, 8 if kind == "sqlite" else 16


def per_user(granted: Counter[str], feature: str) -> Counter[str]:
    return Counter({k.split("/")[1]: n for k, n in granted.items() if k.startswith(feature + "/")})


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis_cluster", "postgres"])
def test_members_racing_on_a_shared_pool_get_exactly_the_pool_and_their_own_counts(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    url, policy_file, threads = setup(request, tmp_path, kind, MEMBERS_RACE)
    policy = parse_policy(MEMBERS_RACE, "members")
    with Limiter(policy, store=url) as lim:
        lim.set_account("space", plan="team")
        granted = race_by_feature(
            url,
            "ai.generate,ai.upscale",
            threads=threads,
            share=kind != "sqlite",
            policy=policy_file,
            accounts="space",
            users=",".join(MEMBERS),
        )
        generations = per_user(granted, "ai.generate")
        charged = sum(COSTS[k.split("/")[0]] * n for k, n in granted.items())
        assert charged <= 150
        for member in MEMBERS:
            meters = {m.limit: m.used for m in lim.usage("space", user=member)}
            assert meters["space_credits"] == charged, member
            assert meters["generations_per_member"] == generations[member] <= 9, member
        rest = 0  # the pool's last credits are still there to take
        while lim.consume("space", "ai.upscale", user="m0").allowed:
            rest += 1
        assert charged + rest == 150


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "redis", "redis_cluster", "postgres"])
def test_users_racing_from_several_spaces_get_exactly_their_global_count(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """On Redis Cluster the spaces are in other slots than the users' counts."""
    url, policy_file, threads = setup(request, tmp_path, kind, SCOPED_RACE)
    policy = parse_policy(SCOPED_RACE, "scoped")
    with Limiter(policy, store=url) as lim:
        for space in SPACES:
            lim.set_account(space, plan="team")
        granted = race_by_feature(
            url,
            "export",
            threads=threads,
            share=kind != "sqlite",
            policy=policy_file,
            accounts=",".join(SPACES),
            users="ann,bob",
        )
        assert per_user(granted, "export") == {"ann": 40, "bob": 40}
        for space in SPACES:
            for user in ("ann", "bob"):
                meters = {m.limit: m.used for m in lim.usage(space, user=user)}
                assert meters["exports_anywhere"] == 40, (space, user)
            assert not lim.consume(space, "export", user="ann").allowed
