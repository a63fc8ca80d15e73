"""Paths and the type of the ``run`` fixture, shared by the CLI tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
POLICIES = ROOT / "tests" / "policies"

Run = Callable[..., Result]
