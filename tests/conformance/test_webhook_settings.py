"""What webhooks keep in a store's settings, on every store: a removed webhook leaves no
state behind, a new one starts after the newest event without reading the log, and the
worker takes a listed webhook whose state is gone as removed (not as one to deliver every
kept event to)."""

from __future__ import annotations

import asyncio
from typing import NoReturn

import pytest

from allowance import Limiter, webhooks
from allowance.http.webhook_worker import WebhookWorker


def test_a_deleted_setting_is_gone_and_cannot_be_swapped_from(limiter: Limiter) -> None:
    store = limiter.store
    store.put_setting("delete.test", "one")
    store.delete_setting("delete.test")
    store.delete_setting("delete.test")  # none there: nothing
    assert store.get_setting("delete.test") is None
    assert not store.swap_setting("delete.test", "one", "two")  # what a worker read before
    assert store.get_setting("delete.test") is None


def test_the_newest_event_id_is_the_last_one_written(limiter: Limiter) -> None:
    store = limiter.store
    assert store.newest_event_id() == 0
    limiter.set_account("acme", "free")
    for plan in ("pro", "max", "pro"):
        limiter.set_account("acme", plan)
    ids = [e.id for e in limiter.events()]
    assert len(ids) == 3 and store.newest_event_id() == ids[-1]


def test_a_new_webhook_starts_after_the_newest_event_without_paging_the_log(
    limiter: Limiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = limiter.store
    limiter.set_account("acme", "free")
    limiter.set_account("acme", "pro")
    (newest,) = limiter.events()

    def paged(*_: object) -> NoReturn:  # thirty days of events can be millions of rows
        raise AssertionError("webhooks.add read the event log")

    monkeypatch.setattr(store, "events", paged)
    hook = webhooks.add(store, "http://127.0.0.1:9/hook", None, 0.0)
    state = webhooks.State.load(store.get_setting(webhooks.state_name(hook.id)))
    assert state.cursor == newest.id and state.deliveries == []


def test_a_removed_webhook_leaves_no_state(limiter: Limiter) -> None:
    store = limiter.store
    hook = webhooks.add(store, "http://127.0.0.1:9/hook", None, 0.0)
    kept = webhooks.add(store, "http://127.0.0.1:9/other", None, 0.0)
    assert webhooks.remove(store, hook.id)
    assert store.get_setting(webhooks.state_name(hook.id)) is None
    assert store.get_setting(webhooks.state_name(kept.id)) is not None
    assert not webhooks.remove(store, hook.id)  # gone already
    assert [h.id for h in webhooks.registered(store)] == [kept.id]


def test_the_worker_skips_a_listed_webhook_whose_state_is_gone(limiter: Limiter) -> None:
    """As when ``remove`` ran between the worker's read of the registry and of the state:
    the worker must not start that webhook over from the first event kept."""
    store = limiter.store
    limiter.set_account("acme", "free")
    limiter.set_account("acme", "pro")  # an event a fresh cursor would take in
    hook = webhooks.add(store, "http://127.0.0.1:9/hook", None, 0.0)
    store.delete_setting(webhooks.state_name(hook.id))

    asyncio.run(WebhookWorker(store).round())
    assert store.get_setting(webhooks.state_name(hook.id)) is None
