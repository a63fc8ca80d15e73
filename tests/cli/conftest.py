"""Running the command line in-process, with a fixed page width and a clean environment."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner, Result

from allowance.cli import app

from .support import Run

# COLUMNS fixes the table width; the others must not leak in from the shell running the tests
ENV: dict[str, str | None] = {
    "COLUMNS": "200",
    "ALLOWANCE_STORE": None,
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
}


@pytest.fixture
def run() -> Run:
    """``run("policy", "check", path)``: the result, with exceptions other than the exit
    raised (so a crash can never pass for an exit status of 1)."""
    runner = CliRunner(env=ENV)

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
        return runner.invoke(app, list(args), env=env, catch_exceptions=False)

    return invoke
