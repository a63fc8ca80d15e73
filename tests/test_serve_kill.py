"""kill -9 of ``allowance serve`` under load (issue 10): after a restart on the same store, the
meter equals the grants the clients saw, plus at most the requests left unanswered. A grant
is committed before it is answered (so none the clients saw is lost), and a decision cut off
mid-write is all or nothing (so none is half-charged or counted twice)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import STORE_FACTORIES
from service.service import Service

pytestmark = pytest.mark.faults

POLICY = """\
version: 1
plans: [{name: big}]
features: {gen: {title: generation}}
limits:
  gens:
    features: [gen]
    window: {type: calendar, unit: day}
    plans: {big: 1000000}
"""
CLIENTS = 16
LOAD_SECONDS = 1.5


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.granted = 0
        self.unanswered = 0
        self.unexpected: list[str] = []


def _client(url: str, key: str, tally: Tally, killed: threading.Event) -> None:
    body = {"account": "acme", "feature": "gen"}
    with httpx.Client(base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}) as http:
        while True:
            try:
                r = http.post("/v1/consume", json=body)
            except httpx.TransportError:  # sent, and the server died before answering
                with tally.lock:
                    tally.unanswered += 1
                return
            with tally.lock:
                if r.status_code == 200 and r.json()["allowed"]:
                    tally.granted += 1
                else:
                    tally.unexpected.append(f"{r.status_code} {r.text[:200]}")
            if killed.is_set():
                return


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_meters_equal_what_clients_saw_after_kill_9(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    factory: Callable[[pytest.FixtureRequest, Path], str] = STORE_FACTORIES[kind]
    store = factory(request, tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    service = Service.start(store, tmp_path, "--policy", str(policy))
    try:
        service.account("acme", "big")
        key = service.new_key("decide")
        tally, killed = Tally(), threading.Event()
        clients = [
            threading.Thread(target=_client, args=(service.url, key, tally, killed))
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        time.sleep(LOAD_SECONDS)
        os.kill(service.proc.pid, signal.SIGKILL)
        killed.set()
        service.proc.wait(10)
        for client in clients:
            client.join(20)
        assert not any(c.is_alive() for c in clients)
    finally:
        service.stop()
    assert tally.unexpected == []
    assert tally.granted > 100, "the load did not run"
    (tmp_path / "again").mkdir()
    again = Service.start(store, tmp_path / "again", "--policy", str(policy))
    try:
        meters = again.call("GET", "/v1/accounts/acme/usage").json()["meters"]
    finally:
        again.stop()
    used = next(m["used"] for m in meters if m["limit"] == "gens")
    print(f"{kind}: granted {tally.granted}, unanswered {tally.unanswered}, meter {used}")
    assert tally.granted <= used <= tally.granted + tally.unanswered, (used, vars(tally))
