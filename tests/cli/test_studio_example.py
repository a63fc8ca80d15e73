"""``examples/studio.yaml``: the seed's later pages as a policy (per-request caps, credits
priced per feature, weekly and monthly batch export counts in each space's billing weeks and
months, single exports per user across spaces), replayed end to end by ``allowance simulate``
on its shipped scenario."""

from __future__ import annotations

import json
from pathlib import Path

from .support import EXAMPLES, Run

POLICY = EXAMPLES / "studio.yaml"
SCENARIO = EXAMPLES / "studio-scenario.yaml"
FIELDS = (
    "account",
    "user",
    "feature",
    "allowed",
    "granted",
    "reason",
    "limit",
    "resets_at",
    "upgrade",
)
NEVER = None  # resets_at of a request no wait admits

EXPECTED = [
    ("sketch", None, "export.batch", False, 0, "no_access", None, None, "pro_weekly"),
    ("northwind", None, "export.batch", False, 0, "request_too_large", "batch_exports_weekly",
     NEVER, None),
    ("northwind", None, "export.batch", True, 250, "ok", None, None, None),
    ("harbor", None, "export.batch", True, 125, "ok", None, None, None),
    ("harbor", None, "export.batch", False, 0, "limit_reached", "batch_exports_weekly",
     "2026-12-03T18:00:00Z", "pro"),
    ("northwind", None, "export.batch", True, 250, "ok", None, None, None),
    ("northwind", None, "export.batch", False, 0, "limit_reached", "batch_exports_monthly",
     "2026-12-15T00:00:00Z", "max"),
    ("harbor", None, "export.batch", True, 100, "ok", None, None, None),
    ("northwind", None, "ai.video", True, 80, "ok", None, None, None),
    ("northwind", None, "ai.upscale", False, 0, "limit_reached", "ai_credits",
     "2026-12-15T00:00:00Z", "max"),
    ("northwind", None, "ai.upscale", True, 50, "ok", None, None, None),
    ("northwind", None, "ai.generate", False, 0, "limit_reached", "ai_credits",
     "2026-12-15T00:00:00Z", "max"),
    ("northwind", None, "ai.generate", True, 1, "ok", None, None, None),
    ("northwind", None, "export.batch", True, 250, "ok", None, None, None),
    ("northwind", "ann", "export.single", True, 15, "ok", None, None, None),
    ("sketch", "ann", "export.single", False, 0, "limit_reached", "exports",
     "2026-12-16T00:00:00Z", "pro_weekly"),
    ("sketch", "ann", "export.single", True, 5, "ok", None, None, None),
    ("sketch", "bob", "export.single", True, 10, "ok", None, None, None),
    ("sketch", "ann", "export.single", True, 20, "ok", None, None, None),
]  # fmt: skip


def test_the_policy_checks(run: Run) -> None:
    result = run("policy", "check", str(POLICY))
    assert result.exit_code == 0, result.output
    assert "9 plans, 6 features, 5 limits" in result.output


def test_the_scenario_replays_as_its_comments_say(run: Run) -> None:
    result = run("simulate", str(SCENARIO), "--policy", str(POLICY), "--json")
    assert result.exit_code == 0, result.output
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [tuple(d.get(f) for f in FIELDS) for d in decisions] == EXPECTED
    # credits speak in what they buy: after 80 s of video, 20 more seconds are left
    assert decisions[8]["remaining"] == 20
    assert decisions[9]["remaining"] == 50  # upscales the 200 credits left buy


def test_the_scenario_as_a_table(run: Run) -> None:
    result = run("simulate", str(SCENARIO), "--policy", str(POLICY))
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "│ 2026-12-01 09:00:00" in line]
    no_access = next(line for line in rows if "no access" in line)
    assert "unlimited" not in no_access  # a Free space has none, not an unlimited number
    too_large = next(line for line in rows if "too large" in line)
    assert "│ 500 " in too_large  # nothing charged: the month's 500 all remain


def test_the_scenario_shows_who_exported(run: Run) -> None:
    result = run("simulate", str(SCENARIO), "--policy", str(POLICY))
    assert result.exit_code == 0, result.output
    assert "sketch (bob)" in result.output


def test_a_per_user_feature_without_its_user_is_named_on_its_line(run: Run, tmp_path: Path) -> None:
    """The line of the event, not the file's first (a missing key has no line of its own)."""
    scenario = tmp_path / "no-user.yaml"
    scenario.write_text(
        "- {at: 2026-12-01T09:00:00Z, account: sketch, plan: free}\n"
        "- {at: 2026-12-01T09:01:00Z, account: sketch, feature: export.single}\n"
    )
    result = run("simulate", str(scenario), "--policy", str(POLICY))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{scenario}:2: event 2: user: "), result.stderr
