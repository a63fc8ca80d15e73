"""``allowance policy diff OLD NEW [--store URL]``: the changes plan by plan, and the accounts of
a store that the new policy would put over a max."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from allowance import Limiter, builtin_policy

from .support import Run

BUILTIN = builtin_policy().to_yaml()


def without_max() -> dict[str, Any]:
    """The built-in policy's data without its Max plan (and the limit only Max has)."""
    policy = builtin_policy().to_data()
    policy["plans"] = [p for p in policy["plans"] if p["name"] != "max"]
    for limit in policy["limits"].values():
        limit["plans"].pop("max")
    del policy["limits"]["studio_hd"]
    policy["features"].pop("background.studio_hd")
    return policy


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_diff_lists_each_change_plan_by_plan(run: Run, tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", BUILTIN)
    new_text = BUILTIN.replace("pro: 30, max: 60}", "pro: 20, max: 60}")
    new_text = new_text.replace(
        "plans: {free: 3000, pro: 4000, max: 6000}", "plans: {free: 3000, pro: 5000, max: 6000}"
    )
    new = write(tmp_path, "new.yaml", new_text)
    result = run("policy", "diff", str(old), str(new), "--json")
    assert result.exit_code == 0, result.output
    found = {
        (c["plan"], c["limit"], c["old"], c["new"]) for c in json.loads(result.stdout)["changes"]
    }
    assert found == {("pro", "transform_daily", "30", "20"), ("pro", "studio", "4,000", "5,000")}
    table = run("policy", "diff", str(old), str(new))
    assert "what changes, plan by plan" in table.stdout and "transform_daily" in table.stdout
    same = run("policy", "diff", str(old), str(old))
    assert "no changes" in same.stdout


def test_diff_names_added_and_removed_plans_limits_and_windows(run: Run, tmp_path: Path) -> None:
    old = write(tmp_path, "old.yaml", BUILTIN)
    policy = without_max()
    policy["limits"]["studio"]["window"] = {"type": "sliding", "length": "24h"}
    new = write(tmp_path, "new.yaml", json.dumps(policy))  # JSON is YAML
    result = run("policy", "diff", str(old), str(new), "--json")
    assert result.exit_code == 0, result.output
    rows = {
        (c["plan"], c["limit"], c["what"], c["new"]) for c in json.loads(result.stdout)["changes"]
    }
    assert ("max", "", "plan", "removed") in rows
    assert ("all plans", "studio", "window", "24 h, sliding") in rows
    assert not any(r[0] == "max" and r[1] for r in rows)  # a removed plan is one row


def test_diff_with_a_store_lists_the_accounts_over_their_new_max(run: Run, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    with Limiter(store=store) as lim:
        lim.set_account("busy", plan="pro")
        lim.set_account("calm", plan="pro")
        lim.set_account("big", plan="max")
        for _ in range(2):  # Pro: 2 a minute
            assert lim.consume("busy", "transform.virtual_model").allowed
    old = write(tmp_path, "old.yaml", BUILTIN)
    new = write(tmp_path, "new.yaml", BUILTIN.replace("pro: 2, max: 5}", "pro: 1, max: 5}"))
    result = run("policy", "diff", str(old), str(new), "--store", store, "--json")
    assert result.exit_code == 0, result.output
    over = json.loads(result.stdout)["over"]
    assert over == [
        {
            "account": "busy",
            "plan": "pro",
            "limit": "transform_rate",
            "used": 2,
            "old_max": 2,
            "new_max": 1,
        }
    ]
    table = run("policy", "diff", str(old), str(new), "--store", store)
    assert "accounts over their new max" in table.stdout and "busy" in table.stdout
    policy = without_max()
    fewer = write(tmp_path, "fewer.yaml", json.dumps(policy))
    gone = json.loads(
        run("policy", "diff", str(old), str(fewer), "--store", store, "--json").stdout
    )
    assert {
        "account": "big",
        "plan": "max",
        "limit": "",
        "used": 0,
        "old_max": None,
        "new_max": None,
    } in gone["over"]


def test_diff_judges_by_the_new_policy_even_where_the_store_holds_one(
    run: Run, tmp_path: Path
) -> None:
    """A store holding a policy (PUT /v1/policy) must not stand in for NEW: a Limiter on it
    would decide with the stored one."""
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    roomy = BUILTIN.replace("pro: 2, max: 5}", "pro: 5, max: 5}")
    with Limiter(store=store) as lim:
        lim.put_policy(roomy)
        lim.set_account("busy", plan="pro")
        for _ in range(2):
            assert lim.consume("busy", "transform.virtual_model").allowed
    old = write(tmp_path, "old.yaml", roomy)
    new = write(tmp_path, "new.yaml", BUILTIN.replace("pro: 2, max: 5}", "pro: 1, max: 5}"))
    result = run("policy", "diff", str(old), str(new), "--store", store, "--json")
    over = json.loads(result.stdout)["over"]
    assert [(o["account"], o["limit"], o["new_max"]) for o in over] == [
        ("busy", "transform_rate", 1)
    ]
