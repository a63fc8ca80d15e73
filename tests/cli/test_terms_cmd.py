"""``allowance accounts override|grant`` against an SQLite store: what they write, a Limiter on
the same store decides with, and ``accounts show`` / ``usage`` show it."""

from __future__ import annotations

import json
from pathlib import Path

from allowance import Limiter

from .support import Run


def test_override_and_grant_from_the_command_line(run: Run, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    assert run("accounts", "set", "acme", "--plan", "pro", "--store", store).exit_code == 0
    done = run("accounts", "override", "acme", "ai_exports", "40", "--store", store, "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["overrides"] == {"ai_exports": 40}
    done = run(
        "accounts", "grant", "acme", "ai_exports", "5",
        "--expires-at", "2099-01-01T00:00:00Z", "--store", store,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "ai_exports: +5 granted until 2099-01-01 00:00:00" in done.stdout
    with Limiter(store=store) as lim:
        assert lim.consume("acme", "export.ai", 45).allowed
        assert not lim.consume("acme", "export.ai").allowed
    shown = run("accounts", "show", "acme", "--store", store)
    assert "ai_exports: max 40 (override)" in shown.stdout
    usage = run("usage", "acme", "--store", store, "--json")
    meter = next(m for m in json.loads(usage.stdout)["meters"] if m["limit"] == "ai_exports")
    assert (meter["used"], meter["max"], meter["override"], meter["granted"]) == (45, 45, 40, 5)
    removed = run("accounts", "override", "acme", "ai_exports", "--remove", "--store", store)
    assert removed.exit_code == 0 and "max 40" not in removed.stdout


def test_bad_terms_are_an_error_line_and_change_nothing(run: Run, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    run("accounts", "set", "acme", "--plan", "pro", "--store", store)
    for args, words in (
        (["override", "acme", "nope", "3"], "limit: not a limit of the policy"),
        (["override", "acme", "ai_exports"], "max: give MAX, or --remove"),
        (["override", "acme", "ai_exports", "5", "--remove"], "max: give MAX, or --remove"),
        (["grant", "acme", "ai_exports", "0"], "amount: expected a whole number"),
        (["grant", "acme", "ai_exports", "1", "--expires-at", "soon"], "expires_at: expected"),
        (
            ["grant", "acme", "ai_exports", "1", "--expires-at", "2001-01-01T00:00:00Z"],
            "expires_at: is not in the future",
        ),
        (["grant", "ghost", "ai_exports", "1"], "ghost"),
    ):
        done = run("accounts", *args, "--store", store)
        assert done.exit_code == 1, (args, done.output)
        assert words in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.output
    shown = json.loads(run("accounts", "show", "acme", "--store", store, "--json").stdout)
    assert (shown["overrides"], shown["grants"]) == ({}, [])
