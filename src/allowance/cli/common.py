"""What every command shares: consoles, the one way errors are shown, and the store option."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from allowance.errors import AllowanceError, InvalidRequest, PolicyError, PolicyIssue
from allowance.policy import Policy, builtin_policy, load_policy

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_STORE = "sqlite:///allowance.db"
STORE_ENV = "ALLOWANCE_STORE"

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar=STORE_ENV,
        help="Store URL: sqlite:///path.db or memory:// (default: $ALLOWANCE_STORE).",
        show_envvar=False,
    ),
]
PolicyOption = Annotated[
    Path | None,
    typer.Option(
        "--policy", help="Policy file (default: the built-in policy).", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def out() -> Console:
    """A console on stdout. Off a terminal (pipes, tests) rich would wrap tables at 80
    columns; a wider page keeps rows whole unless COLUMNS says otherwise."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, width=160 if wide else None)


def fits(console: Console, table: Table, room: int = 0) -> bool:
    """Whether ``table`` fits ``console`` with every cell on one line, ``room`` columns
    spared for what wraps well (prose): else a command shows a narrow layout instead, since
    rich would fold names and cut them short with an ellipsis."""
    unbounded = console.options.update_width(100_000)  # else the measure stops at the page
    return console.measure(table, options=unbounded).maximum <= console.width - room


def err() -> Console:
    # soft_wrap: an error stays on one line whatever the width, so it can be grepped
    return Console(stderr=True, highlight=False, soft_wrap=True)


def clock_text(when: datetime | None) -> str | None:
    """'2026-11-23 15:10:00' in UTC, to the second: the space lets a narrow column wrap the
    date above the time (JSON output keeps full ISO 8601)."""
    return None if when is None else f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S}"


def iso_time(field: str, text: str) -> datetime:
    """An option's ISO 8601 time (the Limiter checks it has a zone)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(field, text, "expected ISO 8601") from None


def error_line(text: str) -> None:
    err().print(Text(text, style="red"))


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit 1."""
    error_line(f"error: {message}")
    raise typer.Exit(1)


def issue_line(source: str, issue: PolicyIssue) -> str:
    """``FILE:LINE: path: message``, the shape compilers use (line or path left out if none)."""
    where = source if issue.line is None else f"{source}:{issue.line}"
    return f"{where}: {issue.path}: {issue.message}" if issue.path else f"{where}: {issue.message}"


def report_policy_error(exc: PolicyError, source: str) -> NoReturn:
    for issue in exc.issues:
        error_line(issue_line(source, issue))
    raise typer.Exit(1)


def read_policy(path: Path | None) -> Policy:
    """The policy file at ``path`` (or the built-in one); a bad file ends the command."""
    if path is None:
        return builtin_policy()
    if not path.exists():
        fail(f"{path}: no such policy file")
    try:
        return load_policy(path)
    except PolicyError as exc:
        report_policy_error(exc, str(path))


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn any ``AllowanceError`` a command lets through into a one-line error and exit 1:
    a user's mistake never shows a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except PolicyError as exc:
            report_policy_error(exc, exc.source or "policy")
        except AllowanceError as exc:
            fail(str(exc))

    return wrapper
