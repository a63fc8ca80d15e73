"""``allowance ledger export``: the ledger (``ledger.py``) of one account or of every account,
streamed as CSV or JSON Lines to a file or stdout, a page at a time (bounded memory for any
number of rows), with a progress line on stderr."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, TextIO

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from allowance import ledger_read, validation
from allowance.cli.common import DEFAULT_STORE, StoreOption, err, handle_errors, iso_time
from allowance.ledger import COLUMNS
from allowance.stores import store_from_url

app = typer.Typer(
    help="Read the ledger: what changed usage and terms, and who.", no_args_is_help=True
)
Format = Literal["csv", "jsonl"]


@app.command("export")
@handle_errors
def export(
    fmt: Annotated[
        Format, typer.Option("--format", help="csv (a header row first) or jsonl (a row a line).")
    ],
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help="This account's rows only (default: every account's).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Rows at or after this ISO 8601 time.", show_default=False),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Rows before this ISO 8601 time.", show_default=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here (default: stdout).", show_default=False),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Stream ledger rows, account by account, each account's in the order written."""
    low = None if since is None else validation.aware_time("since", iso_time("since", since))
    high = None if until is None else validation.aware_time("until", iso_time("until", until))
    source = store_from_url(store)
    try:
        with _opened(output) as sink, _progress() as progress:
            task = progress.add_task("exporting", total=None, rows=0)
            written = 0
            rows = ledger_read.rows(source, account, low, high)
            if fmt == "csv":
                writer = csv.writer(sink, lineterminator="\n")
                writer.writerow(COLUMNS)
                for row in rows:
                    writer.writerow(row.csv_fields())
                    written += 1
                    if written % 1000 == 0:
                        progress.update(task, advance=1000, rows=written)
            else:
                for row in rows:
                    sink.write(json.dumps(row.to_json(), separators=(",", ":")) + "\n")
                    written += 1
                    if written % 1000 == 0:
                        progress.update(task, advance=1000, rows=written)
            progress.update(task, description="exported", completed=written, rows=written)
    finally:
        source.close()


@contextmanager
def _opened(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    with path.open("w", encoding="utf-8", newline="") as sink:
        yield sink


@contextmanager
def _progress() -> Iterator[Progress]:
    """A spinner, the rows written and the time taken, on stderr (stdout may be the export)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        console=err(),
        transient=False,
    ) as progress:
        yield progress
