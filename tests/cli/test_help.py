"""Every command's --help, as a user reads it (``allowance.cli.typer_help``)."""

from __future__ import annotations

import re
from typing import Any

import typer

from allowance.cli import app

from .support import Run


def command_paths() -> list[list[str]]:
    """Every command and group of the app, as the words that name it."""
    paths: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:  # Typer's own click (0.29 vendors it)
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def test_no_flag_shows_a_value_hint(run: Run) -> None:
    paths = command_paths()
    assert ["simulate"] in paths and ["accounts", "set"] in paths
    for path in paths:
        shown = run(*path, "--help")
        assert shown.exit_code == 0, (path, shown.output)
        assert "--help" in shown.output
        assert "<bool>" not in shown.output, (path, shown.output)


def test_an_option_that_takes_a_value_keeps_its_hint(run: Run) -> None:
    shown = run("simulate", "--help").output
    policy = next(line for line in shown.splitlines() if "--policy" in line)
    assert re.search(r"--policy\s+(<path>|PATH)\s", policy), policy  # Typer 0.29 / 0.26
    flag = next(line for line in shown.splitlines() if "--json" in line)
    assert "<" not in flag
