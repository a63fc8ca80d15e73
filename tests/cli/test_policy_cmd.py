"""``allowance policy show`` and ``allowance policy check``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from allowance import builtin_policy, load_policy, parse_policy
from allowance.policy import Policy

from .support import EXAMPLES, POLICIES, Run

BUILTIN_TEXT = resources.files("allowance").joinpath("builtin.yaml").read_text(encoding="utf-8")


def rows(text: str) -> dict[str, list[str]]:
    """The table's first line of each row, by limit name, as its cells."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) > 2 and cells[0] and cells[0] != "limit":
            found[cells[0] if cells[0] != "—" else cells[1]] = cells
    return found


def test_show_builtin_is_the_seed_table(run: Run) -> None:
    result = run("policy", "show")
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table["ai_exports"] == [
        "ai_exports", "export.ai", "2", "30 per seat", "120 per seat", "7 days, anchored"
    ]  # fmt: skip
    assert table["exports"] == [
        "exports",
        "export.standard",
        "250",
        "unlimited (fair use 10,000)",
        "unlimited (fair use 30,000)",
        "calendar month, UTC",
    ]
    assert table["transform_rate"][2:] == ["no access", "2", "5", "60 s, sliding"]
    assert table["transform_daily"][2:] == ["no access", "30", "60", "24 h, anchored"]
    assert table["studio"][2:] == ["3,000", "4,000", "6,000", "24 h, anchored"]
    assert table["studio_hd"][2:] == ["no access", "no access", "4,000", "24 h, anchored"]
    # the feature that no limit lists: unlimited everywhere
    assert table["background.standard"] == [
        "—", "background.standard", "unlimited", "unlimited", "unlimited", "—"
    ]  # fmt: skip
    # all three transform features sit in the transform rows
    for feature in ("virtual_model", "product_staging", "product_beautifier"):
        assert f"transform.{feature}" in result.stdout


def test_show_a_file(run: Run) -> None:
    result = run("policy", "show", str(EXAMPLES / "plans.yaml"))
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    assert table["renders"][2:] == [
        "50", "200 per seat", "unlimited (fair use 50,000)", "calendar day, Europe/Paris"
    ]  # fmt: skip
    assert table["hd_renders"][2:] == ["no access", "20 per seat", "100 per seat", "24 h, anchored"]
    assert table["pdf_weekly"][3] == "unlimited (fair use 500 per seat)"
    assert table["pdf_monthly"][2] == "20, 5 at once"
    assert table["preview"][2:] == ["unlimited", "unlimited", "unlimited", "—"]
    assert table["shares"][2:] == ["30", "300", "unlimited", "calendar day, UTC"]
    # whose counter it is, on the window's second line
    lines = result.stdout.splitlines()
    below = lines[next(i for i, line in enumerate(lines) if "│ shares " in line) + 1]
    assert below.rstrip("│ ").endswith("per user")


def test_show_yaml_prints_the_shipped_file(run: Run) -> None:
    result = run("policy", "show", "--yaml")
    assert result.exit_code == 0
    assert result.stdout == BUILTIN_TEXT


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_accepts_what_show_yaml_prints(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "shown.yaml", run("policy", "show", "--yaml").stdout)
    result = run("policy", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok (3 plans, 8 features, 6 limits)\n"


@pytest.mark.parametrize("source", ["builtin", "plans.yaml"])
def test_check_accepts_the_normalised_dump(run: Run, tmp_path: Path, source: str) -> None:
    args = [] if source == "builtin" else [str(EXAMPLES / source)]
    policy = builtin_policy() if source == "builtin" else load_policy(EXAMPLES / source)
    original = rows(run("policy", "show", *args).stdout)
    # a policy parsed from the dump prints that dump; one without source text dumps itself
    dumped = parse_policy(yaml.safe_dump(policy.to_data()), "dump")
    rebuilt = Policy(policy.spec, None, "rebuilt")
    for name, text in (("dumped.yaml", dumped.to_yaml()), ("rebuilt.yaml", rebuilt.to_yaml())):
        path = write(tmp_path, name, text)
        result = run("policy", "check", str(path))
        assert result.exit_code == 0, result.output
        assert rows(run("policy", "show", str(path)).stdout) == original  # the same policy


def test_check_the_example_policy(run: Run) -> None:
    path = EXAMPLES / "plans.yaml"
    result = run("policy", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok (3 plans, 6 features, 6 limits)\n"


BAD = {
    "negative_max.yaml": [
        "10: limits.ai_exports.plans.free: must be at least 0 (got -2)",
    ],
    "unknown_window_type.yaml": [
        "9: limits.ai_exports.window.type: "
        "must be 'anchored', 'sliding', 'calendar' or 'billing' (got 'rolling')",
    ],
    "typo_key.yaml": [
        "6: limits.ai_exports.features: missing key 'features'",
        "7: limits.ai_exports.featrues: unknown key 'featrues' (did you mean 'features'?)",
    ],
    "missing_plan.yaml": [
        "9: limits.ai_exports.plans: missing plan 'pro': say its max, unlimited or no_access",
    ],
    "unknown_feature.yaml": [
        "9: limits.ai_exports.features[1]: unknown feature 'export.hd' (not in 'features')",
    ],
    "feature_in_no_plan.yaml": [
        "5: features.export.hd: feature 'export.hd' is in no plan: every plan has no_access",
    ],
    "duplicate_key.yaml": ["12: limits.ai_exports.plans.pro: duplicate key 'pro'"],
    "bad_syntax.yaml": ["9: not valid YAML: did not find expected ',' or '}'"],
    "fair_use_on_limited.yaml": [
        "11: limits.exports.plans.pro.fair_use: fair_use is only for an unlimited max",
    ],
    "per_request_zero.yaml": [
        "11: limits.batch_images.plans.pro.per_request: must be at least 1 (got 0)",
    ],
    "per_request_on_no_access.yaml": [
        "10: limits.batch_images.plans.free: a no_access cell takes no other setting",
    ],
    "cost_zero.yaml": [
        "9: limits.ai_credits.costs.ai.video: a cost must be 1 to 1,000,000 (got 0)",
    ],
    "cost_for_unlisted_feature.yaml": [
        "10: limits.ai_credits.costs.ai.video: "
        "a cost for 'ai.video', which this limit does not list in 'features'",
    ],
    "per_request_above_max.yaml": [
        "11: limits.batch_images.plans.pro.per_request: per_request (250) is above max (125)",
    ],
    "calendar_without_unit.yaml": [
        "9: limits.exports.window.type: a calendar window needs 'unit' (day, week or month)",
    ],
    "unknown_scope.yaml": [
        "9: limits.exports.scope: must be 'account', 'user' or 'user_global' (got 'team')",
    ],
    "billing_per_user.yaml": [
        "10: limits.member_exports.scope: a billing window counts per account only (got scope"
        " 'user'): a new billing_anchor moves an account's counters, not its users'; use a"
        " calendar window",
    ],
    "billing_by_the_day.yaml": [
        "10: limits.batch_exports.window.unit: a billing window needs 'unit' month or week",
        "11: limits.batch_exports.window.timezone: a billing period is in UTC, from the"
        " account's billing_anchor",
    ],
    "many_mistakes.yaml": [  # a part the schema refused is not also reported as unknown
        "4: timezon: unknown key 'timezon' (did you mean 'timezone'?)",
        "5: plans[2].name: must be lower-case letters, digits and _, in words joined by dots"
        " (got 'Bad Name')",
        "7: features.ai.generate.colour: unknown key 'colour'",
        "11: limits.gen_daily.features[1]: unknown feature 'ai.nothing' (not in 'features')",
        "12: limits.gen_daily.window.unit: must be 'day', 'week' or 'month' (got 'fortnight')",
        "13: limits.gen_daily.plans.free: must be at least 0 (got -2)",
        "13: limits.gen_daily.plans.max: unknown plan 'max' (plans: free, pro)",
        "16: limits.exports.costs.ai.generate: "
        "a cost for 'ai.generate', which this limit does not list in 'features'",
        "16: limits.exports.costs.ai.generate: a cost must be 1 to 1,000,000 (got 0)",
        "18: limits.exports.plans.free.per_request: per_request (10) is above max (5)",
        "21: limits.credits.scope: must be 'account', 'user' or 'user_global' (got 'planet')",
    ],
}


def test_every_bad_policy_has_a_case() -> None:
    assert sorted(p.name for p in POLICIES.glob("*.yaml")) == sorted(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_reports_each_problem_with_its_line(run: Run, name: str) -> None:
    path = POLICIES / name
    result = run("policy", "check", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"{path}:{line}" for line in BAD[name]]
    # `policy show` refuses the file the same way
    shown = run("policy", "show", str(path))
    assert (shown.exit_code, shown.stderr) == (1, result.stderr)


def test_check_a_missing_file(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    result = run("policy", "check", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"error: {path}: no such policy file\n"
    assert "Traceback" not in result.output


def test_check_a_directory(run: Run, tmp_path: Path) -> None:
    result = run("policy", "check", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{tmp_path}: cannot read {tmp_path}")
    assert "Traceback" not in result.output


def test_check_needs_a_file(run: Run) -> None:
    result = run("policy", "check")
    assert result.exit_code == 2  # a usage error is Typer's


def test_check_a_date_yaml_cannot_build(run: Run, tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "plans: [free]\nfeatures: {a: }\ntimezone: 2026-02-30\n")
    result = run("policy", "check", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{path}:3: cannot read value '2026-02-30': day is out of range for month\n"
    )
