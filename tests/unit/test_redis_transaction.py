"""The Redis slow path as a protocol (``stores/redis_transaction.py``), driven here by hand with
the replies a server would send: a write that loses to a concurrent one is tried again on the
state read afresh, after a pause; one that keeps losing gives up at the deadline, having
written nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest

from allowance import builtin_policy, ops
from allowance.errors import StoreUnavailable
from allowance.request import Request
from allowance.stores.redis_common import KeySpace
from allowance.stores.redis_scripts import lua
from allowance.stores.redis_transaction import Pause, Run, transaction
from allowance.stores.redis_wire import Deadline
from allowance.types import Decision
from allowance.view import NO_PRELOAD, AccountView

POLICY = builtin_policy()
SCRIPTS = (lua("load"), lua("apply"))
NOW = 1_795_000_000.0


def loaded(version: int, counters: str = "") -> list[Any]:
    """load.lua's reply: time, version, plan, seats, next hold expiry, holds, counters, the
    account's own terms."""
    reply = [repr(NOW).encode(), str(version).encode(), b"pro", b"1", b"", b"", counters.encode()]
    return [*reply, b""]


def consume(view: AccountView, now: float) -> Decision:
    return ops.consume(POLICY, view, Request("acme", "export.ai", 1, False, None, None), now)


def start(timeout: float) -> Any:
    space = KeySpace("t")
    deadline = Deadline(timeout)
    return transaction(
        space, SCRIPTS, POLICY, "acme", NOW, consume, NO_PRELOAD, deadline, timeout, None
    )


def test_a_lost_write_is_tried_again_on_fresh_state() -> None:
    protocol = start(5.0)
    first = protocol.send(None)
    assert isinstance(first, Run) and first.script is SCRIPTS[0]
    write = protocol.send(loaded(7))
    assert isinstance(write, Run) and write.script is SCRIPTS[1]
    assert write.argv[0] == "7"  # written only if still at the version read
    pause = protocol.send(0)  # another writer got there first
    assert isinstance(pause, Pause) and 0 < pause.seconds < 1
    again = protocol.send(None)
    assert isinstance(again, Run) and again.script is SCRIPTS[0]
    second = protocol.send(loaded(8))
    assert isinstance(second, Run) and second.argv[0] == "8"
    with pytest.raises(StopIteration) as done:
        protocol.send(1)
    assert done.value.value.granted == 1


def test_a_write_that_keeps_losing_gives_up_at_the_deadline() -> None:
    protocol = start(0.05)
    step = protocol.send(None)
    tries = 0
    with pytest.raises(StoreUnavailable, match="kept changing") as raised:
        while True:
            if isinstance(step, Run) and step.script is SCRIPTS[0]:
                tries += 1
                step = protocol.send(loaded(tries))
            elif isinstance(step, Run):
                step = protocol.send(0)  # lost again
            else:
                time.sleep(step.seconds)
                step = protocol.send(None)
    assert raised.value.maybe_applied is False
    assert tries >= 1
