"""``allowance webhooks add|list|remove|deliveries``: the service's webhooks, in the store
itself (``webhooks.py``); a running ``allowance serve`` on that store delivers to them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from allowance import events, webhooks
from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    StoreOption,
    clock_text,
    fail,
    handle_errors,
    out,
)
from allowance.stores import store_from_url
from allowance.stores.base import Store
from allowance.types import to_datetime

app = typer.Typer(help="Add, list and remove webhooks; see their deliveries.", no_args_is_help=True)
T = TypeVar("T")
HookId = Annotated[str, typer.Argument(help="The webhook's id (see webhooks list).")]


def _on(url: str, fn: Callable[[Store], T]) -> T:
    store = store_from_url(url)
    try:
        return fn(store)
    finally:
        store.close()


@app.command("add")
@handle_errors
def add(
    url: Annotated[str, typer.Argument(help="Where events are POSTed (http:// or https://).")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            help=f"An event type it hears ({', '.join(events.TYPES)}); repeat for more."
            " Without it: every type.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Add a webhook and print its signing secret once."""
    hook = _on(store, lambda s: webhooks.add(s, url, event or None, s.now()))
    if as_json:
        typer.echo(json.dumps({**hook.to_json(), "secret": hook.secret}))
        return
    out().print(
        Text(hook.secret + "\n")
        + Text(f"webhook {hook.id} for {hook.url}; its secret is shown once", style="dim")
    )


@app.command("list")
@handle_errors
def list_hooks(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Every webhook (never the secrets)."""
    hooks = _on(store, webhooks.registered)
    if as_json:
        typer.echo(json.dumps([h.to_json() for h in hooks]))
        return
    table = Table("id", "url", "events", "created")
    for h in hooks:
        kinds = "all" if h.events is None else ", ".join(h.events)
        table.add_row(h.id, Text(h.url), kinds, clock_text(to_datetime(h.created_at)))
    out().print(table)


@app.command("remove")
@handle_errors
def remove(hook_id: HookId, store: StoreOption = DEFAULT_STORE) -> None:
    """Remove a webhook: nothing more is sent to it."""
    if not _on(store, lambda s: webhooks.remove(s, hook_id)):
        fail(f"no webhook {hook_id!r} in {store}")
    out().print(f"removed {hook_id}")


@app.command("deliveries")
@handle_errors
def deliveries(
    hook_id: HookId, store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False
) -> None:
    """A webhook's deliveries, newest first: pending (with the next try), delivered, failed."""
    found = _on(store, lambda s: webhooks.deliveries(s, hook_id))
    if found is None:
        fail(f"no webhook {hook_id!r} in {store}")
    if as_json:
        typer.echo(json.dumps([d.to_json() for d in found]))
        return
    table = Table("event", "type", "status", "tries", "last try", "answer", "next try")
    for d in found:
        answer = d.error or ("" if d.code is None else str(d.code))
        upcoming = to_datetime(d.next_at) if d.status == "pending" else None
        table.add_row(
            str(d.event_id), d.type, d.status, str(d.attempts),
            clock_text(to_datetime(d.last_at)) or "", Text(answer), clock_text(upcoming) or "",
        )  # fmt: skip
    out().print(table)
