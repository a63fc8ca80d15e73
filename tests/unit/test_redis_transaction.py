"""The Redis slow path as a protocol (``stores/redis_transaction.py``), driven here by hand with
the replies a server would send: a write that loses to a concurrent one is tried again on the
state read afresh, after a pause; one that keeps losing gives up at the deadline, having
written nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from allowance import builtin_policy, load_policy, ops, owners
from allowance.errors import StoreUnavailable
from allowance.request import Request
from allowance.stores.redis_common import KeySpace
from allowance.stores.redis_scripts import lua
from allowance.stores.redis_transaction import GLOBAL, Pause, Run, prime, take_primed, transaction
from allowance.stores.redis_wire import Deadline
from allowance.types import Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

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
    """The protocol as a store's ``transact`` starts it: with what was primed, taken."""
    space = KeySpace("t")
    deadline = Deadline(timeout)
    return transaction(
        space, SCRIPTS, POLICY, "acme", NOW, consume, NO_PRELOAD, deadline, timeout, None,
        take_primed(),
    )  # fmt: skip


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


SCOPED = load_policy(Path(__file__).parents[1] / "scoped.yaml")


def drive_export(charges: bool) -> list[str]:
    """A user's export on Redis Cluster (its count across spaces in the user's slot), the
    replies a quiet server would send; the steps it took, by script (and GLOBAL's mode)."""
    space = KeySpace("t")
    space.cluster = True
    req = Request("acme", "export", 1, False, None, "ann")
    preload = Preload(owners=owners.needed(SCOPED, "export", "ann"), charges=charges)
    op = ops.consume if charges else ops.check

    def fn(view: AccountView, now: float) -> Decision:
        return op(SCOPED, view, req, now)

    protocol = transaction(
        space, SCRIPTS, SCOPED, "acme", NOW, fn, preload, Deadline(5.0), 5.0, None
    )
    steps: list[str] = []
    reply: Any = None
    while True:
        try:
            step = protocol.send(reply)
        except StopIteration as done:
            assert done.value.allowed
            return steps
        assert isinstance(step, Run)
        if step.script is GLOBAL:
            steps.append(step.argv[0])
            reply = {"read": None, "lock": [1], "write": 1, "unlock": 1}[step.argv[0]]
        elif step.script is SCRIPTS[0]:
            steps.append("load")
            reply = [*loaded(1)[:2], b"free", *loaded(1)[3:], b""]  # the user's record: none
        else:
            steps.append("apply")
            reply = 1


def test_a_charge_on_a_users_record_in_another_slot_locks_it_before_reading() -> None:
    """Locked and read in one step: five round trips, not read, found to be written, then
    locked and read again (seven)."""
    assert drive_export(charges=True) == ["lock", "load", "write", "apply", "unlock"]


def test_a_check_reads_a_users_record_in_another_slot_without_its_lock() -> None:
    assert drive_export(charges=False) == ["load", "read"]


def test_a_primed_transaction_starts_from_what_decide_read_and_loads_after_losing() -> None:
    keys = KeySpace("t").load_keys("acme", NO_PRELOAD)
    prime("acme", keys, [b"slow", *loaded(7)])
    protocol = start(5.0)
    write = protocol.send(None)  # no load.lua: decide.lua's reply was it
    assert isinstance(write, Run) and write.script is SCRIPTS[1] and write.argv[0] == "7"
    assert isinstance(protocol.send(0), Pause)  # lost: the next try reads afresh
    again = protocol.send(None)
    assert isinstance(again, Run) and again.script is SCRIPTS[0]


@pytest.mark.parametrize(
    "account, reply",
    [
        ("other", [b"slow", *loaded(7)]),  # another account's
        ("acme", [b"slow", repr(NOW).encode()]),  # a slow reply without the load
        ("acme", [b"ok", *loaded(7)]),  # decided in one step
    ],
)
def test_a_prime_that_does_not_fit_is_not_used(account: str, reply: list[Any]) -> None:
    prime(account, KeySpace("t").load_keys(account, NO_PRELOAD), reply)
    first = start(5.0).send(None)
    assert isinstance(first, Run) and first.script is SCRIPTS[0]


def test_a_prime_is_taken_by_the_next_transaction_only() -> None:
    """Taken when the store's transact starts, before anything can fail: a transaction that
    never ran still used it up, so no later operation runs at the primed call's time."""
    prime("acme", KeySpace("t").load_keys("acme", NO_PRELOAD), [b"slow", *loaded(7)])
    start(5.0)  # started, never run (as if the store's in-process lock timed out)
    assert start(5.0).send(None).script is SCRIPTS[0]
    prime("acme", KeySpace("t").load_keys("acme", NO_PRELOAD), [b"slow", *loaded(7)])
    assert start(5.0).send(None).script is SCRIPTS[1]
    assert start(5.0).send(None).script is SCRIPTS[0]
