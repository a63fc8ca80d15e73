"""``allowance webhooks add|list|remove|deliveries`` against an SQLite store; a delivery made
by the service's worker shows in ``deliveries``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from allowance import AsyncLimiter, Limiter, webhooks
from allowance.http.webhook_worker import WebhookWorker
from service.receiver import Receiver

from .support import Run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'allowance.db'}"


def test_add_list_deliveries_remove(run: Run, store: str) -> None:
    receiver = Receiver(failures=1)
    try:
        made = run("webhooks", "add", receiver.url, "--event", "account.plan_changed",
                   "--store", store, "--json")  # fmt: skip
        assert made.exit_code == 0, made.stderr
        hook = json.loads(made.stdout)
        assert hook["secret"].startswith("whsec_") and hook["events"] == ["account.plan_changed"]
        listed = json.loads(run("webhooks", "list", "--store", store, "--json").stdout)
        assert listed == [{k: v for k, v in hook.items() if k != "secret"}]
        assert hook["secret"] not in run("webhooks", "list", "--store", store).stdout
        with Limiter(store=store) as lim:
            lim.set_account("acme", "free")
            lim.set_account("acme", "pro")
        asyncio.run(deliver(store, hook["id"]))  # a failure, then (its retry due) the delivery
        found = json.loads(run("webhooks", "deliveries", hook["id"], "--store", store,
                               "--json").stdout)  # fmt: skip
        assert [(d["type"], d["status"], d["attempts"], d["code"]) for d in found] == [
            ("account.plan_changed", "delivered", 2, 200)
        ]
        table = run("webhooks", "deliveries", hook["id"], "--store", store).stdout
        assert "delivered" in table and "account.plan_changed" in table
        gone = run("webhooks", "remove", hook["id"], "--store", store)
        assert (gone.exit_code, gone.stdout) == (0, f"removed {hook['id']}\n")
        assert json.loads(run("webhooks", "list", "--store", store, "--json").stdout) == []
    finally:
        receiver.close()


async def deliver(store: str, hook_id: str) -> None:
    """The service's worker (retries due at once) until the webhook has nothing pending."""
    async with AsyncLimiter(store=store) as lim:
        task = asyncio.create_task(WebhookWorker(lim.sync.store, first_retry=0.0).run())
        try:
            for _ in range(400):
                await asyncio.sleep(0.05)
                found = webhooks.deliveries(lim.sync.store, hook_id) or []
                if found and all(d.status != "pending" for d in found):
                    return
            raise AssertionError("still pending after 20 s")
        finally:
            task.cancel()


def test_mistakes(run: Run, store: str) -> None:
    bad = run("webhooks", "add", "ftp://x.test/", "--store", store)
    assert bad.exit_code == 1 and "url" in bad.stderr and "http" in bad.stderr
    kind = run("webhooks", "add", "http://x.test/", "--event", "usage.nope", "--store", store)
    assert kind.exit_code == 1 and "events" in kind.stderr and "usage.threshold" in kind.stderr
    for command in ("remove", "deliveries"):
        gone = run("webhooks", command, "wh_nope", "--store", store)
        assert gone.exit_code == 1 and "no webhook 'wh_nope'" in gone.stderr
    assert json.loads(run("webhooks", "list", "--store", store, "--json").stdout) == []
