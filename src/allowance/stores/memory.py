"""``memory://``: everything in this process, guarded by one lock. Fast, thread-safe, gone at
exit; for tests, ``simulate`` and single-process apps.

A denial is kept, per account and request, until a write to the account or the first time
the feature's counters change by time alone (``engine.steady_until``), and answered again
re-timed (``Decision.later``): a client that keeps asking after a 429 costs a lookup, not a
decision. Only this store can: every write to an account passes through it.

Cleanup: idempotency records and settled holds are kept in insertion order and dropped from the
front once expired, a batch every few hundred operations (more than those operations add, see
``upkeep.py``), and the counters of idle accounts whose windows have passed are dropped too, so
the store stays bounded by its accounts.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from allowance import adjust, engine, events, ledger, ops, owners
from allowance.clock import system_clock
from allowance.errors import UnknownAccount
from allowance.events import Event, NewEvent
from allowance.ledger import Entry, Row
from allowance.ops import HOLD_KEEP
from allowance.policy import Policy
from allowance.request import Request
from allowance.state import HELD, AccountState, Counter, Hold, IdempotencyRecord, Terms
from allowance.stores.base import Store
from allowance.stores.keyring import KeyRing, MemoryKeyRing
from allowance.stores.memory_ledger import MemoryLedger
from allowance.stores.upkeep import SWEEP_BATCH, SWEEP_EVERY, spent
from allowance.types import Account, Decision
from allowance.view import NO_PRELOAD, AccountView, Preload

T = TypeVar("T")

DENIALS_KEPT = 16  # per account: more distinct denied requests than this start the memo over


class MemoryView(AccountView):
    __slots__ = ("_counters", "_owned", "_state", "_store", "account_id")

    def __init__(self, store: MemoryStore, account_id: str, state: AccountState) -> None:
        self._store = store
        self._state = state
        self._counters = state.counters  # the stored objects: the engine changes them in place
        self._owned = {}
        self.account_id = account_id

    @property
    def plan(self) -> str:  # type: ignore[override]
        return self._state.plan

    @property
    def seats(self) -> int:  # type: ignore[override]
        return self._state.seats

    @property
    def next_hold_expiry(self) -> float | None:  # type: ignore[override]
        return self._state.next_hold_expiry

    @property
    def adjustments(self) -> Terms:  # type: ignore[override]
        return self._state.adjustments

    def save_counters(self, counters: dict[str, Counter]) -> None:
        pass  # the engine changed the stored objects themselves

    def load_owned(self, owner: str) -> dict[str, Counter]:
        # the stored dicts themselves, as the account's counters
        if owner.startswith(owners.USER):
            return self._state.owned.setdefault(owner, {})
        return self._store._global.setdefault(owner, {})

    def save_owned(self, owner: str) -> None:
        pass

    def save_adjustments(self) -> None:
        pass  # changed in place, as the counters

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        return self._store._idempotency.get((self.account_id, key))

    def put_idempotency(self, key: str, record: IdempotencyRecord) -> None:
        self._store._idempotency[(self.account_id, key)] = record

    def get_hold(self, hold_id: str) -> Hold | None:
        hold = self._store._holds.get(hold_id)
        return hold if hold is not None and hold.account == self.account_id else None

    def put_hold(self, hold: Hold) -> None:
        self._store._holds[hold.id] = hold
        held = self._state.holds
        if hold.state == HELD:
            held[hold.id] = hold
        else:
            held.pop(hold.id, None)
        self._state.next_hold_expiry = min((h.expires_at for h in held.values()), default=None)

    def due_holds(self, now: float) -> list[Hold]:
        return [h for h in self._state.holds.values() if h.expires_at <= now]

    def emit(self, event: NewEvent) -> None:
        marks = self._state.marks
        if event.mark is not None:
            if marks.get(event.mark, -math.inf) > event.at:
                return
            for mark in [m for m, until in marks.items() if until <= event.at]:
                del marks[mark]
            marks[event.mark] = event.until
        self._store._append(event)

    def record(self, rows: list[Entry]) -> None:
        self._store._ledger.append(rows)

    def record_charge(self, charge: ledger.Charge) -> None:
        self._store._ledger.append_charge(self.account_id, charge)


class MemoryStore(Store):
    scheme = "memory"
    blocking = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, AccountState] = {}
        self._global: dict[str, dict[str, Counter]] = {}  # user_global counters, by owner
        self._holds: OrderedDict[str, Hold] = OrderedDict()
        self._idempotency: OrderedDict[tuple[str, str], IdempotencyRecord] = OrderedDict()
        self._ops = 0
        self._scan: list[str] = []  # accounts whose counters the next sweeps look at
        self._settings: dict[str, str] = {}
        self._events: list[Event] = []  # in id order; the oldest dropped after events.KEEP
        self._last_event = 0
        self._ledger = MemoryLedger()

    @classmethod
    def from_url(cls, url: str) -> MemoryStore:
        return cls()

    def now(self) -> float:
        return system_clock()

    fast = True

    def put_account(self, account_id: str, plan: str, seats: int, now: float | None = None) -> bool:
        with self._lock:
            state = self._accounts.get(account_id)
            if state is None:
                self._accounts[account_id] = AccountState(plan, seats)
                return True
            at = system_clock() if now is None else now
            if state.plan != plan and (self.policy is None or self.policy.events):
                self._append(events.plan_changed(account_id, state.plan, plan, seats, at))
            if (state.plan, state.seats) != (plan, seats) and self._keeps_ledger():
                self._ledger.append([ledger.plan_change(account_id, state.plan, plan, seats, at)])
            state.plan, state.seats = plan, seats
            state.denied = None
            return False

    def _append(self, event: NewEvent) -> None:
        self._last_event += 1
        self._events.append(
            Event(self._last_event, event.type, event.at, event.account, event.limit, event.data)
        )

    def _keeps_ledger(self) -> bool:
        return self.policy is None or self.policy.ledger_keep is not None

    def ledger(
        self,
        account: str,
        after: str | None,
        limit: int,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Row]:
        with self._lock:
            return self._ledger.page(account, after, limit, since, until)

    def events(self, after: int, limit: int, account: str | None) -> list[Event]:
        with self._lock:
            found = self._events
            start = bisect.bisect_right(found, after, key=lambda e: e.id)
            picked = (
                e for e in itertools.islice(found, start, None) if account in (None, e.account)
            )
            return list(itertools.islice(picked, limit))

    def newest_event_id(self) -> int:
        return self._last_event  # the counter ids come from (events swept or not)

    def get_account(self, account_id: str) -> Account | None:
        with self._lock:
            state = self._accounts.get(account_id)
            if state is None:
                return None
            return adjust.account_of(account_id, state.plan, state.seats, state.adjustments, None)

    def transact(
        self,
        account_id: str,
        now: float | None,
        fn: Callable[[AccountView, float], T],
        preload: Preload = NO_PRELOAD,
    ) -> T:
        with self._lock:
            state = self._accounts.get(account_id)
            if state is None:
                raise UnknownAccount(account_id)
            if now is None:
                now = system_clock()
            state.denied = None
            result = fn(MemoryView(self, account_id, state), now)
            self._counted(now)
            return result

    def fast_decide(
        self, policy: Policy, req: Request, now: float | None, charge: bool
    ) -> Decision | None:
        """``ops.consume`` / ``ops.check`` of a request without an idempotency key, answered
        from the account's denials while one stands. Not for a feature counted per user:
        how long its denial stands depends on the user's counters, which other accounts'
        requests change too (``user_global``) and ``steady_until`` does not read."""
        key = (req.feature, req.amount, req.partial, req.user, charge)
        memo = req.feature not in policy.user_features
        with self._lock:
            state = self._accounts.get(req.account)
            if state is None:
                raise UnknownAccount(req.account)
            if now is None:
                now = system_clock()
            denied = state.denied
            if denied is not None and memo:
                kept = denied.get(key)
                if kept is not None and kept[0] is policy and kept[1] <= now < kept[2]:
                    decided: Decision = kept[3]
                    return decided.later(kept[1], now)
            view = MemoryView(self, req.account, state)
            decision = ops.decide(policy, view, req, now, charge=charge)[0]
            if decision.allowed:
                state.denied = None  # charged (or a check: nothing written, nothing lost)
            elif memo and (decision.retry_after is not None or decision.reason != "limit_reached"):
                # (a limit_reached that can never fit is left out: its quota reads the clock)
                until = engine.steady_until(
                    policy, req.feature, state.counters, state.next_hold_expiry, now
                )
                if state.adjustments:  # a grant ending changes the max the denial tells
                    until = min(until, adjust.changes_at(state.adjustments, now))
                if denied is None or len(denied) >= DENIALS_KEPT:
                    denied = state.denied = {}
                denied[key] = (policy, now, until, decision)
            self._counted(now)
            return decision

    def _counted(self, now: float) -> None:
        """One more operation; every SWEEP_EVERY-th sweeps a batch."""
        self._ops += 1
        if self._ops % SWEEP_EVERY == 0:
            self._sweep_locked(now, SWEEP_BATCH)

    def sweep(self, now: float | None = None) -> int:
        with self._lock:
            return self._sweep_locked(system_clock() if now is None else now, None)

    def _sweep_locked(self, now: float, batch: int | None) -> int:
        removed = 0
        old = 0  # from the front: the oldest first (a clock stepped back keeps the rest)
        for event in self._events:
            if event.at > now - events.KEEP:
                break
            old += 1
        if old:
            del self._events[:old]
            removed += old
        idem = self._idempotency
        while idem and (batch is None or removed < batch):
            key, record = next(iter(idem.items()))
            if record.expires_at > now:
                break
            del idem[key]
            removed += 1
        holds = self._holds
        for hold_id in list(itertools.islice(holds, batch)):
            hold = holds[hold_id]
            if hold.expires_at + HOLD_KEEP > now:
                break  # holds are kept in creation order, so later ones are younger
            if hold.state == HELD:  # expired and never touched again: return its units first
                state = self._accounts.get(hold.account)
                if state is not None and self.policy is not None:
                    state.denied = None
                    ops.settle_due_holds(self.policy, MemoryView(self, hold.account, state), now)
            del holds[hold_id]
            removed += 1
        return removed + self._reclaim_counters(now, batch)

    def _reclaim_counters(self, now: float, batch: int | None) -> int:
        """Settle the due holds and drop the spent counters of the next ``batch`` accounts
        (all when None), resuming where the last call stopped. Settling is what a sweep of
        the other stores does as well: a hold swept after its expiry stays expired when the
        clock then steps back (it used to be settled here only once its record was deleted,
        HOLD_KEEP later, and a commit after a step back was granted)."""
        policy = self.policy
        if policy is None:
            return 0
        if batch is None or not self._scan:
            self._scan = list(self._accounts)
        cut = 0 if batch is None else max(0, len(self._scan) - batch)
        todo, self._scan = self._scan[cut:], self._scan[:cut]
        removed = 0
        for account_id in todo:
            state = self._accounts.get(account_id)
            if state is None:
                continue
            if state.next_hold_expiry is not None and state.next_hold_expiry <= now:
                state.denied = None
                ops.settle_due_holds(policy, MemoryView(self, account_id, state), now)
            dropped = _drop_spent(policy, state.counters, now)
            dropped += self._ledger.drop(account_id, now - ledger.retention(policy))
            for owner, counters in list(state.owned.items()):
                dropped += _drop_spent(policy, counters, now)
                if not counters:
                    del state.owned[owner]
            if dropped:
                state.denied = None
                removed += dropped
        if batch is None or not self._scan:  # once per pass over the accounts
            for owner, counters in list(self._global.items()):
                removed += _drop_spent(policy, counters, now)
                if not counters:
                    del self._global[owner]
        return removed

    settings_local = True

    def account_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._accounts)

    def get_setting(self, name: str) -> str | None:
        return self._settings.get(name)

    def put_setting(self, name: str, value: str) -> None:
        self._settings[name] = value  # one dict store: atomic under the GIL

    def swap_setting(self, name: str, old: str | None, new: str) -> bool:
        with self._lock:
            if self._settings.get(name) != old:
                return False
            self._settings[name] = new
            return True

    def delete_setting(self, name: str) -> None:
        with self._lock:
            self._settings.pop(name, None)

    def _make_keyring(self) -> KeyRing:
        return MemoryKeyRing()


def _drop_spent(policy: Policy, counters: dict[str, Counter], now: float) -> int:
    """Drop the counters whose windows have passed; how many."""
    gone = [n for n, c in counters.items() if spent(policy, n, c, now)]
    for name in gone:
        del counters[name]
    return len(gone)
