"""``serve --max-inflight`` and ``--graceful-timeout`` on a real process (CONTRACT section 7).

Decisions are held in flight by a throwaway Redis frozen with SIGSTOP (the store's timeout is
5 s, longer than any of these tests waits): the requests beyond the bound get 503 at once,
and SIGTERM lets the ones in flight finish once the store thaws."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from .service import Service
from .test_bad_input import assert_problem

CONSUME = {"account": "inf", "feature": "export.ai"}


@pytest.fixture
def redis() -> Iterator[object]:
    import servers

    try:
        server = servers.start_redis()
    except servers.ServerUnavailable as exc:
        pytest.skip(f"no redis-server: {exc}")
    try:
        yield server
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def serve(redis: object, tmp: Path, *args: str) -> Service:
    url = getattr(redis, "url")  # noqa: B009 (servers is imported in the fixture only)
    service = Service.start(f"{url}?prefix=inf{os.getpid()}&timeout=5", tmp, *args)
    service.account("inf", "pro")
    r = service.call("POST", "/v1/consume", json=CONSUME)  # the key is cached from here
    assert r.status_code == 200, r.text
    return service


@contextmanager
def frozen(redis: object) -> Iterator[None]:
    pid = getattr(redis, "proc").pid  # noqa: B009
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def in_flight(service: Service, count: int) -> tuple[list[threading.Thread], list[object]]:
    """``count`` consumes sent from threads; each leaves a status or an exception."""
    results: list[object] = []

    def one() -> None:
        with httpx.Client(base_url=service.url, timeout=20) as client:
            try:
                r = client.post(
                    "/v1/consume",
                    json=CONSUME,
                    headers={"Authorization": f"Bearer {service.admin}"},
                )
                results.append(r.status_code)
            except httpx.HTTPError as exc:
                results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # all of them reach the server and wait on the store
    return threads, results


def test_beyond_max_inflight_the_answer_is_503_at_once(redis: object, tmp_path: Path) -> None:
    service = serve(redis, tmp_path, "--max-inflight", "4")
    try:
        with frozen(redis):
            threads, results = in_flight(service, 4)
            assert results == []  # held by the store
            for _ in range(6):
                start = time.monotonic()
                r = service.call("POST", "/v1/consume", json=CONSUME)
                assert time.monotonic() - start < 0.5
                assert_problem(r, 503)
                assert r.headers["Retry-After"] == "1"
                assert "in flight" in r.json()["detail"]
            assert service.call("GET", "/healthz", key=None).status_code == 200  # not counted
            # refused in the HTTP protocol, before any task: still on /metrics
            scraped = service.call("GET", "/metrics", key=None).text
            assert 'allowance_http_refused_total{reason="overloaded"} 6.0' in scraped, scraped
        for t in threads:
            t.join(10)
        assert results == [200] * 4
        assert service.call("POST", "/v1/consume", json=CONSUME).status_code == 200
        usage = service.call("GET", "/v1/accounts/inf/usage").json()
        assert {m["limit"]: m["used"] for m in usage["meters"]}["ai_exports"] == 6
    finally:
        service.stop()
    assert "Traceback" not in service.log
    assert re.search(r"\"status\":503,\"refused\":\"overloaded\",\"count\":6\b", service.log)


def test_sigterm_finishes_what_is_in_flight(redis: object, tmp_path: Path) -> None:
    service = serve(redis, tmp_path, "--graceful-timeout", "20")
    try:
        with frozen(redis):
            threads, results = in_flight(service, 4)
            service.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):  # no longer accepting
                httpx.get(service.url + "/healthz", timeout=2)
            assert service.proc.poll() is None and results == []  # waiting for those four
        for t in threads:
            t.join(10)
        assert results == [200] * 4
        assert service.proc.wait(10) in (0, -signal.SIGTERM)  # uvicorn raises it again, done
    finally:
        service.stop()
    assert "Traceback" not in service.log


def test_graceful_timeout_bounds_the_wait(redis: object, tmp_path: Path) -> None:
    service = serve(redis, tmp_path, "--graceful-timeout", "1")
    try:
        with frozen(redis):
            threads, results = in_flight(service, 2)
            start = time.monotonic()
            service.proc.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(5)  # the store would hold them 5 s: they are cut after 1
            assert time.monotonic() - start < 3
            assert results == [503, 503]  # problem+json, not uvicorn's plain-text 500
        service.proc.wait(10)
    finally:
        service.stop()
    assert "Traceback" not in service.log and '"refused":"shutting down"' in service.log
