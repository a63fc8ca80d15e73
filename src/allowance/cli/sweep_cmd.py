"""``allowance sweep``: clean a store up once, for cron (``serve`` does it by itself)."""

from __future__ import annotations

import json
from time import monotonic

import typer

from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PolicyOption,
    StoreOption,
    handle_errors,
    out,
    read_policy,
)
from allowance.limiter import Limiter


@handle_errors
def sweep(
    store: StoreOption = DEFAULT_STORE,
    policy_file: PolicyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete expired idempotency records, settled reservations, spent counters and ledger
    rows older than the policy's retention, and return the units of reservations that
    expired unsettled.

    Runs in short batches until nothing expired is left. `allowance serve` does this every
    `--sweep-interval` seconds; run it from cron when only the library writes to the store.
    Use the policy the applications use: counters of limits it lacks are kept.
    """
    with Limiter(read_policy(policy_file), store=store) as limiter:
        scheme = limiter.store.scheme
        started = monotonic()
        removed = limiter.sweep()
        took = monotonic() - started
    if as_json:
        typer.echo(json.dumps({"removed": removed, "seconds": round(took, 3)}))
        return
    noun = "record" if removed == 1 else "records"
    console = out()
    console.print(
        f"[bold]swept {scheme} store[/bold]: removed [green]{removed:,}[/green] expired {noun}"
        " [dim](idempotency records, reservations, spent counters, ledger rows past their"
        f" retention) in {took:.2f} s[/dim]"
    )
    if scheme.startswith("redis"):
        console.print(
            "[dim]Redis expires records and counters by itself (TTL); the sweep settles "
            "expired reservations.[/dim]"
        )
