"""``allowance simulate``: the seed's worked example, and scenarios that are wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from allowance import InvalidAmount, Limiter

from .support import EXAMPLES, ROOT, Run

SEED = EXAMPLES / "seed-example.yaml"

DENIED_1535 = {
    "at": "2026-11-23T15:35:00Z",
    "account": "acme",
    "feature": "transform.product_beautifier",
    "amount": 1,
    "allowed": False,
    "granted": 0,
    "reason": "limit_reached",
    "limit": "transform_daily",
    "remaining": 0,
    "resets_at": "2026-11-24T15:10:00Z",
    "retry_after": 84900.0,
    "upgrade": "max",
    "message": (
        "You have reached your daily limit of 30 generations for image transformation tools. "
        "It resets on Tue 24 Nov at 15:10 UTC, or upgrade to Max for 60 a day."
    ),
    "fair_use_exceeded": False,
    "degraded": False,
}
GRANTED_1610 = {
    "at": "2026-11-24T16:10:00Z",
    "account": "acme",
    "feature": "transform.virtual_model",
    "amount": 1,
    "allowed": True,
    "granted": 1,
    "reason": "ok",
    "limit": None,
    "remaining": 1,  # the per-minute limit is the tightest after a fresh daily window opens
    "resets_at": None,
    "retry_after": None,
    "upgrade": None,
    "message": (
        "Virtual Model: granted 1; 1 of your per-minute limit of 2 generations for image "
        "transformation tools left."
    ),
    "fair_use_exceeded": False,
    "degraded": False,
}


def check_seed_lines(lines: list[str]) -> None:
    # the plan-only first event prints nothing: 20 + 10 + 3 decisions
    assert len(lines) == 33
    decisions = [json.loads(line) for line in lines]
    assert all(d["allowed"] and d["granted"] == 1 for d in decisions[:30])
    assert decisions[29]["at"] == "2026-11-23T15:34:30Z"
    assert lines[30] == json.dumps(DENIED_1535)  # exact, key order included
    assert decisions[31]["at"] == "2026-11-24T15:09:59Z"
    assert (decisions[31]["allowed"], decisions[31]["limit"]) == (False, "transform_daily")
    assert (decisions[31]["resets_at"], decisions[31]["retry_after"]) == (
        "2026-11-24T15:10:00Z",
        1.0,
    )
    assert lines[32] == json.dumps(GRANTED_1610)


def test_seed_example_json(run: Run) -> None:
    result = run("simulate", str(SEED), "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    check_seed_lines(result.stdout.splitlines())


def test_seed_example_through_the_console_script() -> None:
    script = Path(sys.executable).with_name("allowance")
    assert script.exists(), "install the package: pip install -e ."
    done = subprocess.run(
        [str(script), "simulate", "examples/seed-example.yaml", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    check_seed_lines(done.stdout.splitlines())


def test_seed_example_table(run: Run) -> None:
    result = run("simulate", str(SEED))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("plan pro, 1 seat" in line for line in lines)
    denied = next(line for line in lines if "2026-11-23 15:35:00" in line)
    assert "transform.product_beautifier" in denied
    assert "denied (transform_daily)" in denied
    assert "2026-11-24 15:10:00" in denied
    assert "You have reached your daily limit of 30" in denied
    back = next(line for line in lines if "2026-11-24 16:10:00" in line)
    assert "granted" in back


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def simulate_json(run: Run, tmp_path: Path, text: str, *args: str) -> list[dict[str, Any]]:
    result = run("simulate", str(write(tmp_path, text)), "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_events_mapping_seats_and_partial(run: Run, tmp_path: Path) -> None:
    decisions = simulate_json(
        run,
        tmp_path,
        "events:\n"
        "  - {at: '2026-11-23T08:00:00', account: a, plan: pro, seats: 2}\n"
        "  - {at: 2026-11-23T09:00:00+01:00, account: a, feature: export.ai, amount: 50}\n"
        "  - {at: 2026-11-23T09:00:00Z, account: a, feature: export.ai, amount: 50,"
        " partial: true}\n"
        "  - {at: 2026-11-23T09:00:01Z, account: a, plan: free}\n"
        "  - {at: 2026-11-23T09:00:02Z, account: a, feature: transform.virtual_model}\n",
    )
    assert [d["at"] for d in decisions] == [
        "2026-11-23T08:00:00Z",  # an offset is turned into UTC
        "2026-11-23T09:00:00Z",
        "2026-11-23T09:00:02Z",
    ]
    assert decisions[0]["granted"] == 50  # 30 per seat × 2
    assert (decisions[1]["granted"], decisions[1]["amount"]) == (10, 50)
    assert (decisions[2]["reason"], decisions[2]["upgrade"]) == ("no_access", "pro")


def test_custom_policy(run: Run, tmp_path: Path) -> None:
    decisions = simulate_json(
        run,
        tmp_path,
        "- {at: 2026-11-23T22:59:00Z, account: a, plan: starter}\n"
        "- {at: 2026-11-23T22:59:00Z, account: a, feature: render.standard, amount: 50}\n"
        "- {at: 2026-11-23T22:59:30Z, account: a, feature: render.standard}\n"
        "- {at: 2026-11-23T23:00:00Z, account: a, feature: render.standard}\n",
        "--policy",
        str(EXAMPLES / "plans.yaml"),
    )
    assert [d["allowed"] for d in decisions] == [True, False, True]
    # the calendar day of Paris ends at 23:00 UTC in November
    assert decisions[1]["resets_at"] == "2026-11-23T23:00:00Z"


BAD_SCENARIOS = {
    "unknown key": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- at: 2026-11-23T15:10:00Z\n"
        "  account: acme\n"
        "  feature: transform.virtual_model\n"
        "  amout: 2\n",
        ["5: event 2: unknown key 'amout' (did you mean 'amount'?)"],
    ),
    "bad time": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- {at: 'Monday 15:10', account: acme, feature: transform.virtual_model}\n",
        [
            "2: event 2: at: expected an ISO 8601 time such as 2026-11-23T15:10:00Z "
            "(got 'Monday 15:10')"
        ],
    ),
    "times going backwards": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- {at: 2026-11-23T15:09:00Z, account: acme, feature: transform.virtual_model}\n",
        [
            "2: event 2: at: times go backwards (2026-11-23T15:09:00Z is before the previous "
            "event's 2026-11-23T15:10:00Z); list events in time order"
        ],
    ),
    "amount 0": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- at: 2026-11-23T15:11:00Z\n"
        "  account: acme\n"
        "  feature: transform.virtual_model\n"
        "  amount: 0\n",
        ["5: event 2: amount: expected a whole number from 1 to 1,000,000 (got 0)"],
    ),
    "every bad event at once": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: gold}\n"
        "- {at: 2026-11-23T15:10:00Z, account: bob, feature: export.ai}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro, seats: 0}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, feature: export.hd}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, amount: 2}\n"
        "- {account: acme, feature: export.ai}\n"
        "- 42\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, feature: export.ai, partial: 1}\n",
        [
            "1: event 1: plan: not a plan of the policy (free, pro, max) (got 'gold')",
            "2: event 2: account 'bob' has no plan yet; give it 'plan' on its first event",
            "3: event 3: seats: expected a whole number from 1 to 1,000,000 (got 0)",
            "5: event 5: feature: not a feature of the policy (got 'export.hd')",
            "6: event 6: give a feature to consume, or a plan, seats or billing_anchor",
            "7: event 7: amount needs a feature",
            "8: event 8: missing key 'at'",
            "9: event 9: expected a mapping such as {at: ..., account: ..., ...}",
            "10: event 10: partial: expected true or false (got 1)",
        ],
    ),
    "bad billing anchor": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro, billing_anchor: soon}\n",
        ["1: event 1: billing_anchor: expected an ISO 8601 time (got 'soon')"],
    ),
    "duplicate key": (
        "- at: 2026-11-23T15:10:00Z\n  account: acme\n  plan: pro\n  plan: max\n",
        ["4: duplicate key 'plan'"],
    ),
    "bad YAML": (
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro\n",
        ["2: not valid YAML: did not find expected ',' or '}'"],
    ),
    "empty": ("# nothing\n", ["1: no events: a scenario is a non-empty list of events"]),
    "not a list": (
        "events: 3\n",
        ["1: not a list of events: a scenario is a non-empty list of events"],
    ),
    "mapping without events": (
        "evnts: []\n",
        [
            "1: unknown key 'evnts' (only 'events')",
            "1: missing key 'events': a scenario is a non-empty list of events",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SCENARIOS))
def test_bad_scenarios_name_each_line(run: Run, tmp_path: Path, case: str) -> None:
    text, expected = BAD_SCENARIOS[case]
    path = write(tmp_path, text)
    for args in ([], ["--json"]):
        result = run("simulate", str(path), *args)
        assert result.exit_code == 1
        assert result.stdout == ""  # nothing replayed is shown when the scenario is wrong
        assert result.stderr.splitlines() == [f"{path}:{line}" for line in expected]


def test_an_error_during_the_replay_names_the_event(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise InvalidAmount("amount", 7, "refused by the store")

    monkeypatch.setattr(Limiter, "consume", refuse)
    path = write(
        tmp_path,
        "- {at: 2026-11-23T15:10:00Z, account: acme, plan: pro}\n"
        "- {at: 2026-11-23T15:10:00Z, account: acme, feature: export.ai}\n",
    )
    result = run("simulate", str(path), "--json")
    assert result.exit_code == 1
    assert result.stderr == f"{path}:2: event 2: amount: refused by the store (got 7)\n"


def test_missing_files(run: Run, tmp_path: Path) -> None:
    result = run("simulate", str(tmp_path / "nope.yaml"))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {tmp_path / 'nope.yaml'}: no such scenario file\n",
    )
    result = run("simulate", str(SEED), "--policy", str(tmp_path / "p.yaml"))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {tmp_path / 'p.yaml'}: no such policy file\n",
    )


def test_a_bad_policy_is_reported_like_policy_check(run: Run) -> None:
    bad = ROOT / "tests" / "policies" / "missing_plan.yaml"
    result = run("simulate", str(SEED), "--policy", str(bad))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{bad}:9: limits.ai_exports.plans: missing plan 'pro': say its max, unlimited or "
        "no_access\n"
    )


def test_a_date_that_does_not_exist(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "- {at: 2026-02-30T10:00:00Z, account: a, plan: pro}\n")
    result = run("simulate", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:1: cannot read value '2026-02-30T10:00:00Z': day is out of range for month\n"
    )


def test_text_from_the_user_is_not_rich_markup(run: Run, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "- {at: 2026-11-23T10:00:00Z, account: 'a[bold]b[/bold]', plan: pro}\n"
        "- {at: 2026-11-23T10:00:00Z, account: 'a[bold]b[/bold]', feature: export.ai}\n",
    )
    result = run("simulate", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.count("a[bold]b[/bold]") == 2
