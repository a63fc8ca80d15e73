"""``simulate`` and ``policy show`` on an 80-column terminal: no line wider than the page,
no name cut short, every message whole (rich folded the wide tables to a word a line)."""

from __future__ import annotations

import json

import pytest

from allowance import builtin_policy, load_policy

from .support import EXAMPLES, Run

NARROW = {"COLUMNS": "80"}
SCENARIOS = [
    (EXAMPLES / "seed-example.yaml", None),
    (EXAMPLES / "studio-scenario.yaml", EXAMPLES / "studio.yaml"),
]


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(("scenario", "policy"), SCENARIOS, ids=["seed", "studio"])
def test_simulate_at_80_columns(run: Run, scenario: object, policy: object) -> None:
    extra = [] if policy is None else ["--policy", str(policy)]
    shown = run("simulate", str(scenario), *extra, env=NARROW)
    assert shown.exit_code == 0, shown.output
    lines = [line.rstrip() for line in shown.stdout.splitlines()]
    assert max(len(line) for line in lines) <= 80
    assert "…" not in shown.stdout
    decisions = [
        json.loads(line)
        for line in run("simulate", str(scenario), *extra, "--json").stdout.splitlines()
    ]
    assert len(lines) <= 5 * len(decisions) + 10  # a few lines an event, not a word a line
    for decision in decisions:
        assert flat(decision["message"]) in flat(shown.stdout)
        assert decision["feature"] in shown.stdout


def test_the_seeds_refusal_at_80_columns_says_which_limit_and_when(run: Run) -> None:
    shown = run("simulate", str(SCENARIOS[0][0]), env=NARROW).stdout
    lines = [line.rstrip() for line in shown.splitlines()]
    at = next(i for i, line in enumerate(lines) if "denied" in line)
    assert lines[at] == "15:35:00  acme  transform.product_beautifier ×1  denied (transform_daily)"
    assert lines[at + 1] == "    remaining 0, resets 2026-11-24 15:10:00"
    assert lines[at + 2].startswith("    You have reached your daily limit of 30 generations")


@pytest.mark.parametrize("policy", [None, EXAMPLES / "studio.yaml"], ids=["builtin", "studio"])
def test_policy_show_at_80_columns(run: Run, policy: object) -> None:
    shown = run("policy", "show", *([] if policy is None else [str(policy)]), env=NARROW)
    assert shown.exit_code == 0, shown.output
    assert max(len(line.rstrip()) for line in shown.stdout.splitlines()) <= 80
    assert "…" not in shown.stdout
    loaded = builtin_policy() if policy is None else load_policy(str(policy))
    words = set(shown.stdout.replace(",", " ").split())
    for limit in loaded.limits.values():
        assert limit.name in words
        for plan in loaded.plans:
            assert plan.name in words
    for feature in loaded.features:
        assert feature in words


def test_a_wide_page_keeps_the_table(run: Run) -> None:
    assert "┃ limit" in run("policy", "show", env={"COLUMNS": "200"}).stdout
    assert "┃ time" in run("simulate", str(SCENARIOS[0][0]), env={"COLUMNS": "200"}).stdout
