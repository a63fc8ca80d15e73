"""``allowance usage`` and ``allowance accounts`` against an SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allowance import Limiter, load_policy

from .support import EXAMPLES, ROOT, Run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'allowance.db'}"


def test_accounts_set_and_show(run: Run, store: str) -> None:
    created = run("accounts", "set", "acme", "--plan", "pro", "--seats", "3", "--store", store)
    assert (created.exit_code, created.stdout) == (0, "created account acme: plan pro, 3 seats\n")
    # a plan change alone keeps the seats
    updated = run("accounts", "set", "acme", "--plan", "max", "--store", store)
    assert updated.stdout == "updated account acme: plan max, 3 seats\n"
    shown = run("accounts", "show", "acme", "--store", store)
    assert (shown.exit_code, shown.stdout) == (0, "account acme: plan max (Max), 3 seats\n")
    as_json = run("accounts", "show", "acme", "--store", store, "--json")
    assert json.loads(as_json.stdout) == {
        "id": "acme",
        "plan": "max",
        "seats": 3,
        "overrides": {},
        "grants": [],
        "billing_anchor": None,
    }


def test_usage_json_and_table(run: Run, store: str) -> None:
    setup = run("accounts", "set", "acme", "--plan", "pro", "--seats", "2", "--store", store)
    assert setup.exit_code == 0
    with Limiter(store=store) as lim:
        for _ in range(2):
            assert lim.consume("acme", "transform.virtual_model").allowed
        assert lim.consume("acme", "export.ai", 5).allowed
        assert lim.consume("acme", "export.standard", 7).allowed
    result = run("usage", "acme", "--store", store, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["account"], data["plan"]) == ("acme", "pro")
    meters = {m["limit"]: m for m in data["meters"]}
    assert list(meters) == ["ai_exports", "exports", "transform_rate", "transform_daily", "studio"]
    assert (meters["ai_exports"]["used"], meters["ai_exports"]["max"]) == (5, 60)  # 30 × 2 seats
    assert (meters["exports"]["used"], meters["exports"]["max"]) == (7, None)
    daily = meters["transform_daily"]
    assert (daily["used"], daily["max"], daily["remaining"]) == (2, 30, 28)
    assert daily["window_start"].endswith("Z") and daily["resets_at"].endswith("Z")
    assert (meters["studio"]["used"], meters["studio"]["window_start"]) == (0, None)

    table = run("usage", "acme", "--store", store)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert "usage of acme (plan pro, 2 seats; times in UTC)" in table.stdout

    def row(limit: str) -> str:
        return next(line for line in lines if line.startswith(f"│ {limit} "))

    assert "5 / 60" in row("ai_exports")
    assert "unlimited" in row("exports")
    assert "7 (unlimited, fair use 10,000)" in row("exports")  # not per seat
    assert "2 / 2" in row("transform_rate")
    assert "2 / 30" in row("transform_daily")
    assert "0 / 4,000" in row("studio") and "—" in row("studio")


def test_store_from_the_environment(run: Run, store: str) -> None:
    env = {"ALLOWANCE_STORE": store}
    assert run("accounts", "set", "acme", "--plan", "free", env=env).exit_code == 0
    result = run("usage", "acme", "--json", env=env)
    assert json.loads(result.stdout)["plan"] == "free"
    # the same store when named on the command line
    assert run("accounts", "show", "acme", "--store", store).exit_code == 0


def test_default_store_is_allowance_db(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("accounts", "set", "acme", "--plan", "free").exit_code == 0
    assert (tmp_path / "allowance.db").exists()


def test_unknown_account(run: Run, store: str) -> None:
    for args in (["usage", "bob"], ["accounts", "show", "bob"]):
        result = run(*args, "--store", store)
        assert result.exit_code == 1
        assert result.stderr == (
            f"error: no account 'bob' in {store}; create it with "
            "`allowance accounts set bob --plan PLAN`\n"
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["accounts", "set", "acme", "--plan", "gold"],
            "plan: not a plan of the policy (free, pro, max) (got 'gold')",
        ),
        (
            ["accounts", "set", "acme", "--plan", "pro", "--seats", "0"],
            "seats: expected a whole number from 1 to 1,000,000 (got 0)",
        ),
    ],
)
def test_bad_settings_are_one_line(run: Run, store: str, args: list[str], message: str) -> None:
    result = run(*args, "--store", store)
    assert (result.exit_code, result.stderr) == (1, f"error: {message}\n")


def test_bad_store_url(run: Run) -> None:
    result = run("usage", "acme", "--store", "mongodb://localhost:1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: store: unknown scheme 'mongodb'")
    assert len(result.stderr.splitlines()) == 1


def test_unreachable_store(run: Run) -> None:
    result = run("usage", "acme", "--store", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: redis: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_plan_the_policy_lacks(run: Run, store: str) -> None:
    assert run("accounts", "set", "acme", "--plan", "pro", "--store", store).exit_code == 0
    other = ["--store", store, "--policy", str(EXAMPLES / "plans.yaml")]
    result = run("usage", "acme", *other)
    assert result.exit_code == 1
    assert result.stderr == "error: plan: account 'acme' has a plan the policy lacks (got 'pro')\n"
    shown = run("accounts", "show", "acme", *other)
    assert shown.stdout == "account acme: plan pro (not in this policy), 1 seat\n"


def test_usage_errors_are_typers(run: Run) -> None:
    assert run("accounts", "set", "acme").exit_code == 2  # --plan is required
    assert run("usage").exit_code == 2


BILLED = ROOT / "tests" / "billed.yaml"


def test_accounts_set_with_a_billing_anchor(run: Run, store: str) -> None:
    policy = BILLED
    common = ("--store", store, "--policy", str(policy))
    anchor = "2026-01-31T09:30:00+01:00"
    created = run("accounts", "set", "acme", "--plan", "free", "--billing-anchor", anchor, *common)
    assert (created.exit_code, created.stdout) == (
        0,
        "created account acme: plan free, 1 seat, billing anchor 2026-01-31 08:30:00\n",
    )
    shown = run("accounts", "show", "acme", *common)
    assert shown.stdout.splitlines() == [
        "account acme: plan free (Free), 1 seat",
        "  billing anchor 2026-01-31 08:30:00: months renew on day 31 (a shorter month's"
        " last), weeks on Saturdays, at 08:30:00 UTC",
    ]
    as_json = json.loads(run("accounts", "show", "acme", *common, "--json").stdout)
    assert as_json["billing_anchor"] == "2026-01-31T08:30:00Z"
    with Limiter(load_policy(policy), store=store) as lim:
        meter = lim.usage("acme")[0]
        assert meter.resets_at is not None and meter.resets_at.hour == 8
        assert meter.resets_at.day in (28, 29, 30, 31)
    assert "billing month, the account's" in run("policy", "show", str(policy)).stdout
    # a plan change keeps the anchor; a bad anchor names the field and changes nothing
    run("accounts", "set", "acme", "--plan", "pro", *common)
    for bad, problem in (
        ("yesterday", "billing_anchor: expected ISO 8601 (got 'yesterday')"),
        ("2026-01-15T09:30:00", "billing_anchor: expected a timezone-aware datetime"),
    ):
        refused = run(
            "accounts", "set", "acme", "--plan", "free", "--billing-anchor", bad, *common
        )  # fmt: skip
        assert refused.exit_code != 0 and problem in refused.stderr, refused.stderr
        assert "Traceback" not in refused.output
    again = json.loads(run("accounts", "show", "acme", *common, "--json").stdout)
    assert (again["plan"], again["billing_anchor"]) == ("pro", "2026-01-31T08:30:00Z")
    # "none" removes it: calendar months and weeks again
    removed = run("accounts", "set", "acme", "--plan", "pro", "--billing-anchor", "none", *common)
    assert removed.stdout == "updated account acme: plan pro, 1 seat, no billing anchor\n"
    gone = json.loads(run("accounts", "show", "acme", *common, "--json").stdout)
    assert gone["billing_anchor"] is None


def test_usage_of_a_user(run: Run, store: str) -> None:
    """``--user`` meters that user's per-user limits; without it they are left out."""
    scoped = ROOT / "tests" / "scoped.yaml"
    with Limiter(load_policy(scoped), store=store) as lim:
        lim.set_account("space", plan="free")
        assert lim.consume("space", "ai.generate", 3, user="ann").allowed

    def meters(*more: str) -> dict[str, int]:
        result = run("usage", "space", "--store", store, "--policy", str(scoped), "--json", *more)
        assert result.exit_code == 0, result.output
        return {m["limit"]: m["used"] for m in json.loads(result.stdout)["meters"]}

    assert meters() == {"space_credits": 3}
    assert meters("--user", "ann") == {
        "space_credits": 3,
        "generations_per_user": 3,
        "exports_per_user": 0,
        "exports_everywhere": 0,
    }
