"""``allowance load-factor set|show`` against an SQLite store: what it sets, a Limiter on the
same store decides with."""

from __future__ import annotations

import json
from pathlib import Path

from allowance import Limiter

from .support import Run


def test_set_and_show_the_load_factor(run: Run, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    done = run("load-factor", "set", "0.5", "--limit", "ai_exports", "--store", store, "--json")
    assert done.exit_code == 0, done.output
    factors = json.loads(done.stdout)["factors"]
    assert factors["ai_exports"] == 0.5 and factors["transform_daily"] == 1.0
    with Limiter(store=store) as lim:
        lim.set_account("acme", plan="pro")
        assert lim.consume("acme", "export.ai", 20, partial=True).granted == 15
    shown = run("load-factor", "show", "--store", store)
    assert shown.exit_code == 0
    row = next(line for line in shown.stdout.splitlines() if "ai_exports" in line)
    assert "0.5" in row and "exports with AI features" in row
    assert "1 (not lowered)" in next(
        line for line in shown.stdout.splitlines() if "transform_daily" in line
    )
    everything = run("load-factor", "set", "1", "--store", store, "--json")
    assert set(json.loads(everything.stdout)["factors"].values()) == {1.0}


def test_a_bad_factor_or_limit_is_an_error_line(run: Run, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'allowance.db'}"
    for args, words in (
        (["0"], "factor: must be more than 0 and at most 1"),
        (["1.5"], "factor: must be more than 0 and at most 1"),
        (["0.5", "--limit", "nope"], "limits: is not a limit of the policy"),
    ):
        result = run("load-factor", "set", *args, "--store", store)
        assert result.exit_code == 1
        assert words in result.stderr and "Traceback" not in result.output
    shown = run("load-factor", "show", "--store", store, "--json")
    assert set(json.loads(shown.stdout)["factors"].values()) == {1.0}
