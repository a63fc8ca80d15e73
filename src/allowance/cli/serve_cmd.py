"""``allowance serve`` and ``allowance keys``: run the HTTP service, manage its API keys."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from allowance.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PolicyOption,
    StoreOption,
    clock_text,
    err,
    fail,
    handle_errors,
    out,
    read_policy,
)
from allowance.extras import needs
from allowance.http.deadlines import BODY_TIMEOUT, HEADER_TIMEOUT
from allowance.keys import SCOPES, check_accounts, new_key
from allowance.limiter import Limiter
from allowance.stores import store_from_url
from allowance.stores.upkeep import SWEEP_INTERVAL
from allowance.types import to_datetime
from allowance.webhooks import FIRST_RETRY

BOOTSTRAP_ENV = "ALLOWANCE_BOOTSTRAP_KEY"
MAX_INFLIGHT = 512  # per worker: ~0.15 s of queue at a few thousand decisions a second
GRACEFUL_TIMEOUT = 10  # a decision takes milliseconds; a store call is bounded well under 1 s


def _at_least(low: float, text: str) -> Any:
    return typer.Option(min=low, help=text)


keys_app = typer.Typer(help="Create, list and revoke the service's API keys.", no_args_is_help=True)


@handle_errors
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    store: StoreOption = DEFAULT_STORE,
    policy: PolicyOption = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "info",
    sweep_interval: Annotated[
        float,
        _at_least(0, "Seconds between cleanups of expired records and spent counters (0: off)."),
    ] = SWEEP_INTERVAL,
    max_inflight: Annotated[
        int,
        _at_least(
            0,
            "Requests in flight per worker beyond which /v1 answers 503 + Retry-After at once "
            "instead of queueing (0: no bound).",
        ),
    ] = MAX_INFLIGHT,
    graceful_timeout: Annotated[
        int, _at_least(0, "On SIGTERM, seconds to finish what is in flight before cutting it.")
    ] = GRACEFUL_TIMEOUT,
    header_timeout: Annotated[
        float, _at_least(0.01, "Seconds a client has to send a whole request head.")
    ] = HEADER_TIMEOUT,
    body_timeout: Annotated[
        float, _at_least(0.01, "Seconds a client has to send a body once its head is in.")
    ] = BODY_TIMEOUT,
    webhook_retry: Annotated[
        float,
        _at_least(
            0.01, "Seconds before a failed webhook delivery's first retry (each next: twice)."
        ),
    ] = FIRST_RETRY,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json).

    With no key in the store and no $ALLOWANCE_BOOTSTRAP_KEY, one admin key is created and
    printed once.
    """
    with needs("server", "allowance serve"):
        # all of the service's stack, so a missing part fails here, not in a worker
        import httptools  # noqa: F401  (uvicorn's http= below)
        import uvicorn
        import uvloop  # noqa: F401  (uvicorn's loop= below)

        import allowance.http.app  # noqa: F401  (FastAPI, prometheus-client)
        from allowance.http.protocol import TimedHttpToolsProtocol

    read_policy(policy)  # a bad file stops here, with its lines
    if store.startswith("memory:"):
        # the store lives in the serving process alone: one worker, and a first key handed
        # over as the bootstrap key (a key written here would be in this process only)
        if workers > 1:
            fail("store: memory:// lives in one process; with --workers use sqlite:// or a server")
        if not os.environ.get(BOOTSTRAP_ENV):
            secret = new_key("admin", "", 0.0)[1]
            os.environ[BOOTSTRAP_ENV] = secret
            _announce(store, secret)
    with Limiter(policy, store) as limiter:
        ring = limiter.store.keyring()
        bootstrap = os.environ.get(BOOTSTRAP_ENV)
        if bootstrap:
            if not ring.ensure_bootstrap(bootstrap, limiter.store.now()):
                err().print(f"[yellow]warning: ${BOOTSTRAP_ENV} names a revoked key[/yellow]")
        elif not ring.all():
            key, secret = new_key("admin", "created by serve", limiter.store.now())
            ring.add(key)
            _announce(store, secret)
    os.environ["ALLOWANCE_STORE"] = store
    os.environ["ALLOWANCE_SWEEP_INTERVAL"] = repr(sweep_interval)
    os.environ["ALLOWANCE_POLICY"] = "" if policy is None else str(Path(policy).resolve())
    os.environ["ALLOWANCE_MAX_INFLIGHT"] = str(max_inflight)
    os.environ["ALLOWANCE_WEBHOOK_RETRY"] = repr(webhook_retry)
    os.environ["ALLOWANCE_HEADER_TIMEOUT"] = repr(header_timeout)
    os.environ["ALLOWANCE_BODY_TIMEOUT"] = repr(body_timeout)
    uvicorn.run(
        "allowance.http.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the service writes its own structured access log
        log_level=log_level,
        http=TimedHttpToolsProtocol,  # httptools, with header and body read deadlines
        ws="none",  # no WebSocket route: an upgrade is not taken
        loop="uvloop",
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=graceful_timeout,
    )


def _announce(store: str, secret: str) -> None:
    err().print(
        f"[bold]No API key in {store}; created an admin key (shown once):[/bold]\n"
        f"  {secret}\n"
        f"  export ALLOWANCE_KEY={secret}"
    )


@keys_app.command("create")
@handle_errors
def create(
    scope: Annotated[str, typer.Option(help="read, decide or admin.", show_default=False)],
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    account: Annotated[
        list[str] | None,
        typer.Option(
            "--account",
            help="An account the key acts for, or a prefix ending in * (team-*); repeat for"
            " more. Without it: every account.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = DEFAULT_STORE,
    as_json: JsonOption = False,
) -> None:
    """Create a key and print it once (only its digest is stored). A key bound to accounts
    (--account) acts for those only: any other account is unknown to it."""
    if scope not in SCOPES:
        fail(f"scope: expected one of {', '.join(SCOPES)} (got {scope!r})")
    accounts = check_accounts(account or None)  # before the store is opened
    s = store_from_url(store)
    try:
        key, secret = new_key(scope, name, s.now(), accounts)
        s.keyring().add(key)
    finally:
        s.close()
    if as_json:
        typer.echo(json.dumps({**key.to_json(), "key": secret}))
        return
    bound = "" if key.accounts is None else f", for {', '.join(key.accounts)} only"
    out().print(
        Text(secret + "\n")
        + Text(f"id {key.id}, scope {key.scope}{bound}; shown once, keep it safe", style="dim")
    )


@keys_app.command("list")
@handle_errors
def list_keys(store: StoreOption = DEFAULT_STORE, as_json: JsonOption = False) -> None:
    """Every key with its scope, name and times (never the secrets)."""
    s = store_from_url(store)
    try:
        keys = s.keyring().all()
    finally:
        s.close()
    if as_json:
        typer.echo(json.dumps([k.to_json() for k in keys]))
        return
    table = Table("id", "scope", "name", "accounts", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            k.id,
            k.scope,
            Text(k.name),
            Text("all" if k.accounts is None else ", ".join(k.accounts)),
            clock_text(to_datetime(k.created_at)),
            clock_text(to_datetime(k.last_used_at)) or "never",
            clock_text(to_datetime(k.revoked_at)) or "",
            style="dim" if k.revoked_at is not None else None,
        )
    out().print(table)


@keys_app.command("revoke")
@handle_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see keys list).")],
    store: StoreOption = DEFAULT_STORE,
) -> None:
    """Revoke a key: the service refuses it within seconds."""
    s = store_from_url(store)
    try:
        found = s.keyring().revoke(key_id, s.now())
    finally:
        s.close()
    if not found:
        fail(f"no key {key_id!r} in {store}")
    out().print(f"revoked {key_id}")
