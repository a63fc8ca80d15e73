"""``examples/studio.yaml``: the seed's later pages as a policy (per-request caps, credits
priced per feature, weekly and monthly batch export counts in each space's billing weeks and
months), replayed end to end by
``allowance simulate`` on its shipped scenario."""

from __future__ import annotations

import json

from .support import EXAMPLES, Run

POLICY = EXAMPLES / "studio.yaml"
SCENARIO = EXAMPLES / "studio-scenario.yaml"
FIELDS = ("account", "feature", "allowed", "granted", "reason", "limit", "resets_at", "upgrade")
NEVER = None  # resets_at of a request no wait admits

EXPECTED = [
    ("sketch", "export.batch", False, 0, "no_access", None, None, "pro_weekly"),
    ("northwind", "export.batch", False, 0, "request_too_large", "batch_exports_weekly",
     NEVER, None),
    ("northwind", "export.batch", True, 250, "ok", None, None, None),
    ("harbor", "export.batch", True, 125, "ok", None, None, None),
    ("harbor", "export.batch", False, 0, "limit_reached", "batch_exports_weekly",
     "2026-12-03T18:00:00Z", "pro"),
    ("northwind", "export.batch", True, 250, "ok", None, None, None),
    ("northwind", "export.batch", False, 0, "limit_reached", "batch_exports_monthly",
     "2026-12-15T00:00:00Z", "max"),
    ("harbor", "export.batch", True, 100, "ok", None, None, None),
    ("northwind", "ai.video", True, 80, "ok", None, None, None),
    ("northwind", "ai.upscale", False, 0, "limit_reached", "ai_credits",
     "2026-12-15T00:00:00Z", "max"),
    ("northwind", "ai.upscale", True, 50, "ok", None, None, None),
    ("northwind", "ai.generate", False, 0, "limit_reached", "ai_credits",
     "2026-12-15T00:00:00Z", "max"),
    ("northwind", "ai.generate", True, 1, "ok", None, None, None),
    ("northwind", "export.batch", True, 250, "ok", None, None, None),
]  # fmt: skip


def test_the_policy_checks(run: Run) -> None:
    result = run("policy", "check", str(POLICY))
    assert result.exit_code == 0, result.output
    assert "9 plans, 6 features, 5 limits" in result.output


def test_the_scenario_replays_as_its_comments_say(run: Run) -> None:
    result = run("simulate", str(SCENARIO), "--policy", str(POLICY), "--json")
    assert result.exit_code == 0, result.output
    decisions = [json.loads(line) for line in result.stdout.splitlines()]
    assert [tuple(d[f] for f in FIELDS) for d in decisions] == EXPECTED
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
