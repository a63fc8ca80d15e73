"""The Redis slow path, written once and free of I/O: ``load.lua`` reads the account (and the
records the operation will read), the operation runs on a view of it, and ``apply.lua`` writes
the result only if the account's version is unchanged; else a pause that grows with each loss
(``retry_pause``) and again, until the call's deadline, then ``gave_up``.

The protocol yields what to do (``Run``: EVALSHA a script; ``Pause``: sleep) and is sent the
replies; ``redis.py`` drives it with blocking calls, ``redis_async.py`` awaits the same steps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import count
from typing import Any, TypeVar

from allowance.policy import Policy
from allowance.stores.redis_common import KeySpace, _num, gave_up, retry_pause
from allowance.stores.redis_events import OUTBOX, RELAY, outbox_of
from allowance.stores.redis_scripts import lua
from allowance.stores.redis_wire import Deadline, Lua
from allowance.view import AccountView, NotLoaded, Preload

__all__ = ["Pause", "Primed", "Run", "prime", "relay_outbox", "take_primed", "transaction"]

T = TypeVar("T")
GLOBAL = lua("global")  # a user's record across accounts, in its own slot (Redis Cluster)
#: what decide.lua read when it left a charge to the slow path: the store's next ``transact``
#: in the same context (the same call: ``calls.run``) takes it, and its transaction starts
#: from it instead of loading it again (a round trip of three: a charge crossing an event
#: level)
Primed = tuple[str, list[str], list[Any]]  # account, keys, load.lua's reply
_primed: ContextVar[Primed | None] = ContextVar("allowance_redis_primed", default=None)


def prime(account: str, keys: list[str], reply: list[Any]) -> None:
    """After decide.lua (``keys``, ``reply``): keep what it read if it sent the request to
    the slow path with it (``{'slow', then load.lua's reply}``). Any other reply sets
    nothing (a set is an allocation per decision): what an earlier call kept cannot be
    left, as every ``transact`` takes it first."""
    if reply[0] == b"slow" and len(reply) > 2:
        loaded = reply[1:]  # load.lua's: eight fields, then a record per key after the two
        _primed.set((account, keys[: len(loaded) - 6], loaded))


def take_primed() -> Primed | None:
    """What ``prime`` kept, once: every ``transact`` takes it first, so it never outlives the
    call that primed it (a later operation would run at that call's time)."""
    primed = _primed.get()
    _primed.set(None)
    return primed


@dataclass(frozen=True, slots=True)
class Run:
    """EVALSHA ``script`` with these KEYS and ARGV; the reply is sent back."""

    script: Lua
    keys: list[str]
    argv: list[Any]
    # a step after the write (an event's relay, redis_events.py): a failure is sent back as
    # None, not raised: the operation is done, and the sweep relays what is left
    after_write: bool = False


@dataclass(frozen=True, slots=True)
class Pause:
    """Sleep this long before the next try (nothing is sent back)."""

    seconds: float


def transaction(
    space: KeySpace,
    scripts: tuple[Lua, Lua],
    policy: Policy,
    account_id: str,
    now: float | None,
    fn: Callable[[AccountView, float], T],
    preload: Preload,
    deadline: Deadline,
    timeout: float,
    fetch: Callable[[str], bytes | None] | None,
    primed: Primed | None = None,
) -> Generator[Run | Pause, Any, T]:
    """``fn`` run on the account, its writes applied atomically; ``scripts`` are
    (load, apply). ``fetch`` reads a record that was not preloaded (None: the caller
    preloads everything its operation reads). ``primed``: what decide.lua read for this call
    (``take_primed``); the first try starts from it if it is this account's and these keys.

    On Redis Cluster a user's record across accounts is in another slot (``apart``): it is
    read on its own, and an operation that writes it runs again holding its lock
    (``global.lua``), writes it before the account's ``apply.lua`` and puts it back as it
    was if that loses a race, so no other account's operation comes in between. A charge
    (``preload.charges``) takes the locks first: five round trips where read-then-lock took
    seven."""
    load, apply_script = scripts
    more: list[str] = []  # per-user records found missing (a reservation's user)
    at_arg = ["" if now is None else _num(now)]
    token = uuid.uuid4().hex
    locked: dict[str, bytes | None] = {}  # the records apart locked, as read under the lock
    first = space.apart(account_id, preload.owners) if preload.charges else []
    if first:  # a charge: locked and read in one step each, not read, then locked and read
        locked = yield from _lock(space, first, token, deadline, account_id, timeout)
    for attempt in count():
        keys = space.load_keys(account_id, preload, more)
        apart = space.apart(account_id, (*preload.owners, *more))
        if locked and set(apart) - set(locked):  # a new one (a hold come due): lock them anew
            yield from _unlock(space, locked, token)
            locked = {}
        local = [k for k in keys if k not in apart]
        if primed is not None and primed[:2] == (account_id, local):
            loaded = list(primed[2])
        else:
            loaded = list((yield Run(load, local, at_arg)))
        primed = None
        for key in apart:
            loaded.append(locked[key] if key in locked else (yield Run(GLOBAL, [key], ["read"])))
        view = space.view(account_id, local + apart, loaded, fetch)
        at = float(loaded[0])
        try:
            result = fn(view, at)
        except NotLoaded as missing:  # read them with the account, and run it again
            more += missing.owners
            continue
        except BaseException:
            yield from _unlock(space, locked, token)
            raise
        apply = view.apply_args(policy, at)
        if apply is None:
            yield from _unlock(space, locked, token)
            return result
        apply_keys, apply_argv, writes = _split(apply[0], apply[1], apart)
        if writes and not locked:  # again, under the lock of each record it writes
            locked = yield from _lock(space, apart, token, deadline, account_id, timeout)
            continue
        for key, value, ttl in writes:
            if (yield Run(GLOBAL, space.locked_pair(key), ["write", token, "1" + value, ttl])) != 1:
                raise gave_up(account_id, timeout)  # its lock expired: past the deadline
        applied = yield Run(apply_script, apply_keys, apply_argv)
        if applied == 1 or (isinstance(applied, list) and applied[0] == 1):
            yield from _unlock(space, locked, token)
            yield from relay_outbox(space, account_id, applied)
            return result
        for key, _, ttl in writes:  # as it was: no one else wrote it, the lock is ours
            old = locked[key]
            put_back = "0" if old is None else "1" + old.decode()
            yield Run(GLOBAL, space.locked_pair(key), ["write", token, put_back, ttl])
        pause = retry_pause(attempt)
        if time.monotonic() + pause >= deadline.end:
            yield from _unlock(space, locked, token)
            raise gave_up(account_id, timeout)
        yield Pause(pause)
    raise AssertionError("unreachable")


def relay_outbox(space: KeySpace, account: str, reply: Any) -> Generator[Run, Any, None]:
    """After a script that wrote an account's outbox (``reply``: its answer): the entries
    into the event log, then out of the outbox (``redis_events.py``)."""
    entries = outbox_of(reply)
    if entries is None:
        return
    relay_keys = space.event_log.relay_keys(account)
    top = yield Run(RELAY, relay_keys, [account, *entries], after_write=True)
    if top is not None:
        trim = ["trim", int(top)]
        yield Run(OUTBOX, space.outbox_keys(account), trim, after_write=True)


def _split(
    keys: list[str], argv: list[Any], apart: list[str]
) -> tuple[list[str], list[Any], list[tuple[str, str, Any]]]:
    """apply.lua's KEYS and ARGV without the records ``apart`` (each: value, TTL, expected
    value after the first eight, the events' and the ledger rows'), and those records'
    writes: (key, value, TTL)."""
    if not apart:
        return keys, argv, []
    rows_at = 8 + 5 * int(argv[6])  # the ledger's rows: R, keep, time, R bodies
    fixed, head = rows_at + 3 + int(argv[rows_at]), 9 if argv[7] == "1" else 5
    local_keys, local_argv = keys[:head], argv[:fixed]
    writes = []
    for i, key in enumerate(keys[head:]):
        value, ttl, expect = argv[fixed + 3 * i : fixed + 3 + 3 * i]
        if key in apart:
            writes.append((key, value, ttl))
        else:
            local_keys.append(key)
            local_argv += [value, ttl, expect]
    return local_keys, local_argv, writes


def _lock(
    space: KeySpace,
    keys: list[str],
    token: str,
    deadline: Deadline,
    account_id: str,
    timeout: float,
) -> Generator[Run | Pause, Any, dict[str, bytes | None]]:
    """Each record's lock, in key order (two operations never wait for each other's), until
    the deadline; what each record holds."""
    got: dict[str, bytes | None] = {}
    for key in sorted(keys):
        for attempt in count():
            ttl = max(1, int(deadline.left() * 1000))  # an operation that dies frees it then
            reply = yield Run(GLOBAL, space.locked_pair(key), ["lock", token, ttl])
            if reply[0] == 1:
                got[key] = reply[1] if len(reply) > 1 else None
                break
            pause = retry_pause(attempt)
            if time.monotonic() + pause >= deadline.end:
                yield from _unlock(space, got, token)
                raise gave_up(account_id, timeout)
            yield Pause(pause)
    return got


def _unlock(
    space: KeySpace, locked: dict[str, bytes | None], token: str
) -> Generator[Run | Pause, Any, None]:
    for key in locked:
        yield Run(GLOBAL, space.locked_pair(key), ["unlock", token])
