"""The Redis slow path, written once and free of I/O: ``load.lua`` reads the account (and the
records the operation will read), the operation runs on a view of it, and ``apply.lua`` writes
the result only if the account's version is unchanged; else a pause that grows with each loss
(``retry_pause``) and again, until the call's deadline, then ``gave_up``.

The protocol yields what to do (``Run``: EVALSHA a script; ``Pause``: sleep) and is sent the
replies; ``redis.py`` drives it with blocking calls, ``redis_async.py`` awaits the same steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from itertools import count
from typing import Any, TypeVar

from allowance.policy import Policy
from allowance.stores.redis_common import KeySpace, _num, gave_up, retry_pause
from allowance.stores.redis_wire import Deadline, Lua
from allowance.view import AccountView, NotLoaded, Preload

__all__ = ["Pause", "Run", "transaction"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Run:
    """EVALSHA ``script`` with these KEYS and ARGV; the reply is sent back."""

    script: Lua
    keys: list[str]
    argv: list[Any]


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
) -> Generator[Run | Pause, Any, T]:
    """``fn`` run on the account, its writes applied atomically; ``scripts`` are
    (load, apply). ``fetch`` reads a record that was not preloaded (None: the caller
    preloads everything its operation reads)."""
    load, apply_script = scripts
    more: list[str] = []  # per-user records found missing (a reservation's user)
    keys = space.load_keys(account_id, preload)
    at_arg = ["" if now is None else _num(now)]
    for attempt in count():
        loaded = yield Run(load, keys, at_arg)
        view = space.view(account_id, keys, loaded, fetch)
        at = float(loaded[0])
        try:
            result = fn(view, at)
        except NotLoaded as missing:  # read them with the account, and run it again
            more += missing.owners
            keys = space.load_keys(account_id, preload, more)
            continue
        apply = view.apply_args(policy, at)
        if apply is None or (yield Run(apply_script, apply[0], apply[1])) == 1:
            return result
        pause = retry_pause(attempt)
        if time.monotonic() + pause >= deadline.end:
            raise gave_up(account_id, timeout)
        yield Pause(pause)
    raise AssertionError("unreachable")
