"""Webhooks (CONTRACT 8) end to end: a real ``allowance serve`` delivering to a real receiver
on loopback, signed; retried with backoff when it fails; none lost across a kill -9; once
when two servers share the store; the routes refuse bad input by field."""

from __future__ import annotations

import itertools
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from allowance import Limiter, webhooks
from conftest import STORE_FACTORIES

from .receiver import Receiver
from .service import Service

RETRY = "0.3"  # the first retry after 0.3 s, then 0.6, 1.2: three failures take ~2.1 s


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(failures=3)
    try:
        yield found
    finally:
        found.close()


def add_hook(svc: Service, url: str, **extra: object) -> dict[str, object]:
    r = svc.call("POST", "/v1/webhooks", json={"url": url, **extra})
    assert r.status_code == 201, r.text
    hook: dict[str, object] = r.json()
    return hook


def served(request: pytest.FixtureRequest, tmp_path: Path, kind: str, *args: str) -> Service:
    store = STORE_FACTORIES[kind](request, tmp_path)
    return Service.start(store, tmp_path, "--webhook-retry", RETRY, *args)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis"])
def test_an_event_arrives_signed_after_three_failures(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, receiver: Receiver
) -> None:
    svc = served(request, tmp_path, kind)
    try:
        svc.account("acme", "free")
        hook = add_hook(svc, receiver.url, events=["account.plan_changed"])
        secret = str(hook["secret"])
        assert secret.startswith("whsec_")
        listed = svc.call("GET", "/v1/webhooks").json()
        assert listed == [{k: v for k, v in hook.items() if k != "secret"}]  # never the secret
        svc.account("acme", "pro")  # account.plan_changed
        (got,) = receiver.wait(1)
        calls = receiver.calls
        assert [c.answered for c in calls] == [500, 500, 500, 200]
        pauses = [round(b.at - a.at, 2) for a, b in itertools.pairwise(calls)]
        # each pause at least its share of the doubling, and late by less than a poll (0.5 s)
        # and a loaded machine's slack (a list comparison would check only the first pause)
        bounds = [(0.3, 0.8), (0.6, 1.1), (1.2, 1.7)]
        assert all(lo <= p <= hi + 0.3 for p, (lo, hi) in zip(pauses, bounds, strict=True)), pauses
        assert pauses == sorted(pauses), pauses
        event = json.loads(got.body)
        assert event["type"] == "account.plan_changed"
        assert event["data"] == {"from": "free", "to": "pro", "seats": 1}
        assert {c.headers["allowance-event-id"] for c in calls} == {str(event["id"])}
        assert got.headers["content-type"] == "application/json"
        signature = got.headers["allowance-signature"]
        assert webhooks.verify(secret, signature, got.body, time.time())
        assert not webhooks.verify("whsec_other", signature, got.body, time.time())
        assert not webhooks.verify(secret, signature, got.body + b" ", time.time())
        r = svc.call("GET", f"/v1/webhooks/{hook['id']}/deliveries")
        assert r.status_code == 200, r.text
        (delivery,) = r.json()["deliveries"]
        assert delivery["event_id"] == event["id"]
        assert (delivery["status"], delivery["attempts"], delivery["code"]) == ("delivered", 4, 200)
        svc.account("acme", "max")
        assert len(receiver.wait(2)) == 2  # the next one at once: the receiver works now
    finally:
        svc.stop()


@pytest.mark.faults
def test_a_kill_9_between_the_charge_and_the_delivery_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = STORE_FACTORIES["sqlite"](request, tmp_path)
    receiver = Receiver(failures=10**9)  # answers 500 until told otherwise
    try:
        svc = served_at(store, tmp_path / "one")
        try:
            svc.account("acme", "free")
            add_hook(svc, receiver.url)
            svc.account("acme", "pro")  # the first event: tried, failed, pending
            deadline = time.monotonic() + 20
            while not receiver.calls and time.monotonic() < deadline:
                time.sleep(0.02)
            assert receiver.calls, "no delivery was tried"
        finally:
            svc.http.close()
            svc.proc.send_signal(signal.SIGKILL)
            svc.proc.wait()
        with Limiter(store=store) as lim:  # the second event: written while no server runs
            lim.set_account("acme", "max")
            written = [e.id for e in lim.events()]
        assert len(written) == 2
        receiver.failures = 0
        again = served_at(store, tmp_path / "two")
        try:
            got = receiver.wait(2)
        finally:
            again.stop()
        ids = sorted(int(c.headers["allowance-event-id"]) for c in got)
        assert ids == written  # each once (no kill came between a 2xx and its record)
    finally:
        receiver.close()


def served_at(store: str, tmp: Path) -> Service:
    tmp.mkdir()
    return Service.start(store, tmp, "--webhook-retry", RETRY)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_two_servers_on_one_store_deliver_each_event_once(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    store = STORE_FACTORIES[kind](request, tmp_path)
    receiver = Receiver()
    one, two = served_at(store, tmp_path / "one"), served_at(store, tmp_path / "two")
    one.admin = two.admin  # (one bootstrap key per store: the last start's)
    try:
        add_hook(one, receiver.url)
        for i in range(10):
            (one if i % 2 else two).account(f"team-{i}", "free")
        for i in range(10):
            (two if i % 2 else one).account(f"team-{i}", "pro")
        got = receiver.wait(10)
        time.sleep(1.5)  # three more rounds of both workers: nothing more comes
        ids = [c.headers["allowance-event-id"] for c in receiver.calls]
        assert len(got) == 10 and len(ids) == len(set(ids)) == 10
    finally:
        one.stop()
        two.stop()
        receiver.close()


@pytest.mark.parametrize(
    ("body", "field"),
    [({"url": "ftp://example.test/x"}, "url"), ({"url": "not a url"}, "url"),
     ({"url": "http://127.0.0.1/x", "events": ["usage.nope"]}, "events"),
     ({"url": "http://127.0.0.1/x", "events": []}, "events"),
     ({"url": "http://127.0.0.1/x", "extra": 1}, "extra")],
)  # fmt: skip
def test_a_bad_webhook_is_a_422_naming_the_field(
    sqlite_service: Service, body: dict[str, object], field: str
) -> None:
    before = sqlite_service.call("GET", "/v1/webhooks").json()
    r = sqlite_service.call("POST", "/v1/webhooks", json=body)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json())
    assert sqlite_service.call("GET", "/v1/webhooks").json() == before  # nothing added


def test_unknown_webhooks_are_404_and_other_keys_403(sqlite_service: Service) -> None:
    svc = sqlite_service
    assert svc.call("DELETE", "/v1/webhooks/wh_nope").status_code == 404
    assert svc.call("GET", "/v1/webhooks/wh_nope/deliveries").status_code == 404
    hook = add_hook(svc, "http://127.0.0.1:9/never")
    read = svc.new_key("read")
    assert svc.call("GET", "/v1/webhooks", key=read).status_code == 403
    assert (
        svc.call("POST", "/v1/webhooks", key=read, json={"url": "http://a.test/"}).status_code
        == 403
    )
    assert svc.call("DELETE", f"/v1/webhooks/{hook['id']}").status_code == 204
    assert svc.call("DELETE", f"/v1/webhooks/{hook['id']}").status_code == 404
    assert all(h["id"] != hook["id"] for h in svc.call("GET", "/v1/webhooks").json())
