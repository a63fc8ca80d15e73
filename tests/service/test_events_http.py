"""``GET /v1/events?after=&limit=&account=`` and ``Client.events``, on a real service."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from allowance import AsyncLimiter, Client
from allowance.http.app import create_app
from allowance.stores.base import Store
from allowance.stores.memory import MemoryStore

from .service import Service

STUDIO = "background.studio"  # Pro: 4,000 a day


def test_a_crossing_charge_is_an_event_read_by_account(sqlite_service: Service) -> None:
    svc = sqlite_service
    svc.account("events-acme", "pro")
    for amount in (3199, 1, 799, 1):
        r = svc.call("POST", "/v1/consume", json={"account": "events-acme", "feature": STUDIO,
                                                 "amount": amount})  # fmt: skip
        assert r.status_code == 200, r.text
    r = svc.call("GET", "/v1/events", params={"account": "events-acme"})
    assert r.status_code == 200, r.text
    found = r.json()["events"]
    assert [(e["type"], e["limit"], e["data"]["used"]) for e in found] == [
        ("usage.threshold", "studio", 3200),
        ("usage.limit_reached", "studio", 4000),
    ]
    assert found[1]["data"]["upgrade"] == "max" and found[1]["at"].endswith("Z")
    after = svc.call("GET", "/v1/events", params={"account": "events-acme",
                                                  "after": found[0]["id"]}).json()  # fmt: skip
    assert after["events"] == found[1:]
    with Client(svc.url, svc.admin) as lim:
        read = lim.events(account="events-acme")
    assert [e.to_json() for e in read] == found


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"after": -1}, "after"),
     ({"after": "x"}, "after"), ({"account": ""}, "account")],
)  # fmt: skip
def test_bad_paging_is_a_422_naming_the_field(
    sqlite_service: Service, params: dict[str, object], field: str
) -> None:
    r = sqlite_service.call("GET", "/v1/events", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field


def test_every_service_store_keeps_events(service: Service) -> None:
    r = service.call("GET", "/v1/events")
    assert r.status_code == 200, r.text
    assert r.json()["events"] == []


class Forgetful(MemoryStore):
    """A store made elsewhere that keeps no events: what ``Store.events`` answers."""

    events = Store.events


def test_a_store_without_events_is_a_501_not_a_500() -> None:
    store, secret = Forgetful(), "s3cret-admin-key-0123456789"
    store.keyring().ensure_bootstrap(secret, 0.0)  # (what the service's start-up does)
    app = create_app(AsyncLimiter(None, store))

    async def read() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as http:
            return await http.get("/v1/events", headers={"Authorization": f"Bearer {secret}"})

    r = asyncio.run(read())
    assert r.status_code == 501, r.text
    assert r.json()["type"].endswith("not-supported")
    assert "does not keep events" in r.json()["detail"]
