"""The failure modes against real servers frozen with SIGSTOP (CONTRACT section 7): in
``deny`` mode every decision ends within the timeout + 50 ms, then at once while the breaker is
open, and the store serves again after SIGCONT; in ``allow`` mode every decision is granted
degraded and the journal is charged once the server is back, nothing twice. Each test runs
its own throwaway server."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import servers
from allowance import Limiter, ManualClock, StoreUnavailable

pytestmark = pytest.mark.faults

TIMEOUT = 0.3
SLACK = 0.05
START = "2026-11-23T15:10:00Z"


@dataclass
class Frozen:
    url: str
    freeze: Callable[[], None]
    thaw: Callable[[], None]


def _postgres() -> Iterator[Frozen]:
    server = servers.start_postgres()
    try:
        url = f"{server.url}?schema=o{uuid.uuid4().hex[:8]}&timeout={TIMEOUT}"
        yield Frozen(
            url,
            lambda: server.signal_all(signal.SIGSTOP),
            lambda: server.signal_all(signal.SIGCONT),
        )
    finally:
        server.signal_all(signal.SIGCONT)
        server.stop()


def _redis() -> Iterator[Frozen]:
    server = servers.start_redis()
    try:
        yield Frozen(
            f"{server.url}?timeout={TIMEOUT}",
            lambda: server.proc.send_signal(signal.SIGSTOP),
            lambda: server.proc.send_signal(signal.SIGCONT),
        )
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()


STARTERS = {"postgres": _postgres, "redis": _redis}


@pytest.fixture(params=sorted(STARTERS))
def frozen(request: pytest.FixtureRequest) -> Iterator[Frozen]:
    try:
        starter = STARTERS[request.param]()
        server = next(starter)
    except servers.ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    next(starter, None)


def meter(url: str, limit: str) -> int:
    with Limiter(None, url, ManualClock(START), timeout=5) as observer:
        return next(m.used for m in observer.usage("acme") if m.limit == limit)


def test_deny_answers_within_the_timeout_then_at_once(frozen: Frozen) -> None:
    limiter = Limiter(None, frozen.url, ManualClock(START))
    limiter.set_account("acme", "pro")
    assert limiter.consume("acme", "export.ai").allowed
    frozen.freeze()
    try:
        took = []
        for _ in range(20):
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as raised:
                limiter.consume("acme", "export.ai")
            took.append(time.monotonic() - began)
            assert raised.value.retry_after > 0
        assert max(took) <= TIMEOUT + SLACK, took
        assert limiter.guard.breaker.is_open
        # the breaker: no waiting on the store (the median; one call may meet the scheduler)
        opened = sorted(took[3:])
        assert opened[len(opened) // 2] < 0.001, took
        assert opened[-1] < 0.05, took
    finally:
        frozen.thaw()
    deadline = time.monotonic() + 10
    while True:  # probes close the breaker once the store answers
        try:
            assert limiter.consume("acme", "export.ai").allowed
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert not limiter.guard.breaker.is_open
    limiter.close()


def test_allow_grants_degraded_and_charges_the_journal_after_sigcont(frozen: Frozen) -> None:
    limiter = Limiter(None, frozen.url, ManualClock(START), on_store_error="allow")
    limiter.set_account("acme", "pro")
    frozen.freeze()
    try:
        decisions = []
        began = time.monotonic()
        for _ in range(30):
            decisions.append(limiter.consume("acme", "export.ai"))
        took = time.monotonic() - began
    finally:
        frozen.thaw()
    assert all(d.allowed and d.degraded for d in decisions)
    assert took <= 3 * (TIMEOUT + SLACK) + 0.1  # 3 waits until the breaker opens, then none
    journaled = len(limiter.guard.journal)
    unrecorded = limiter.guard.journal.unrecorded
    assert journaled + unrecorded == 30 and unrecorded <= 3
    deadline = time.monotonic() + 10
    while limiter.guard.journal and time.monotonic() < deadline:
        limiter.flush_journal()
        time.sleep(0.05)
    assert not limiter.guard.journal
    charged = meter(frozen.url, "ai_exports")
    # every journaled grant is charged once; the ones whose request reached the frozen server
    # before their timeout may have been applied when it resumed (never journaled: not twice)
    assert journaled <= charged <= 30
    limiter.close()
