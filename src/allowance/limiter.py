"""``Limiter``: the Python API. It validates arguments, then runs one operation of ``ops.py``
atomically in the store. Time is the injected ``clock`` or, without one, the store's clock.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from allowance import calls, events, ids, ledger_read, listing, load, ops, validation
from allowance.clock import Clock, checked, system_clock
from allowance.errors import (
    AllowanceError,
    StoreUnavailable,
    UnknownFeature,
    UnknownPlan,
)
from allowance.events import Event
from allowance.ledger import LedgerPage, Row, acting_as
from allowance.listing import AccountPage
from allowance.live import POLICY, Live
from allowance.policy import Policy, builtin_policy, load_policy, parse_policy
from allowance.reservation import Reservation
from allowance.resilience import FLUSH_BATCH, JOURNAL_SIZE, Mode, StoreGuard, journal_key
from allowance.stores import Store, store_from_url
from allowance.types import UNCHANGED, Account, Anchor, Decision, Meter, to_datetime

__all__ = ["DEFAULT_TTL", "Limiter", "Reservation", "resolve_policy", "without_store"]

DEFAULT_TTL = 900.0
T = TypeVar("T")
log = logging.getLogger("allowance.store")


def resolve_policy(policy: Policy | str | Path | None) -> Policy:
    if policy is None:
        return builtin_policy()
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy)


class Limiter:
    """Decides and charges usage against a policy, atomically, in a store.

    ``policy``: a ``Policy``, a policy file path, or None for the built-in policy.
    ``store``: a URL (``memory://``, ``sqlite:///path.db``) or a ``Store``.
    ``clock``: zero-argument callable returning epoch seconds; None = the store's clock.
    ``timeout``: seconds any one store call may take (Redis, PostgreSQL; a store given by URL);
    None = the URL's ``?timeout=`` or ``DEFAULT_TIMEOUT``.
    ``on_store_error``: ``"deny"`` or ``"allow"``, what a decision answers when the store fails
    (replaces the policy's top-level ``on_store_error``; a feature's own setting still wins).
    ``journal_size``: degraded grants kept for charging later (see ``resilience.py``).
    """

    def __init__(
        self,
        policy: Policy | str | Path | None = None,
        store: str | Store = "memory://",
        clock: Clock | None = None,
        *,
        timeout: float | None = None,
        on_store_error: Mode | None = None,
        journal_size: int = JOURNAL_SIZE,
    ) -> None:
        local = resolve_policy(policy)
        mode = validation.store_error_mode(on_store_error)
        size = validation.journal_size(journal_size)
        self.store = store_from_url(store, timeout=timeout) if isinstance(store, str) else store
        self.store.policy = local
        self.clock = clock
        self.guard = StoreGuard(local, mode, size)
        self.live = Live(local)

    @property
    def policy(self) -> Policy:
        """The policy in force: the store's (``put_policy``) or this Limiter's own."""
        return self.live.base

    def policy_now(self) -> Policy:
        """The policy to decide with now: the store's or this Limiter's own, with the load
        factors in force (``live.py``), its settings read again from the store when the
        copy here is older than ``load.REFRESH``. ``StoreUnavailable`` when that read fails
        for want of the store: the call it was for fails with it, within the same timeout."""
        if self.live.refresh(self.store):
            self._switched()
        return self.live.policy

    def _switched(self) -> None:
        """The base policy changed: what else reads it follows."""
        base = self.live.base
        self.store.policy = base
        self.guard.use(base)
        log.info("policy: now deciding with %s", base)

    def _reread(self) -> None:
        if self.live.read(self.store):
            self._switched()

    def put_policy(self, policy: Policy | str) -> Policy:
        """Keep ``policy`` (a ``Policy`` or a policy file's text, validated here:
        ``PolicyError`` names each problem and its line) in the store: every Limiter on the
        store decides with it within ``load.REFRESH`` seconds, this one at once, in place of
        its own."""
        text = policy.to_yaml() if isinstance(policy, Policy) else policy
        parse_policy(text, "policy")
        self.store.put_setting(POLICY, text)
        self._reread()
        return self.policy

    def use_local_policy(self, policy: Policy) -> None:
        """Replace this Limiter's own policy (``serve`` re-reading its file on SIGHUP); a
        policy kept in the store still wins."""
        if self.live.set_local(policy):
            self._switched()

    def set_load_factor(
        self, factor: float, limits: list[str] | tuple[str, ...] | None = None
    ) -> dict[str, float]:
        """Lower limits for everyone on the store, e.g. in a period of high demand: each
        limit named (``None``: every limit) gets effective max floor(max × seats × factor),
        0 < factor <= 1 (1 lifts it). Kept in the store; every Limiter on it applies it
        within ``load.REFRESH`` seconds, this one at once. Returns the factor of each
        limit now."""
        f = load.checked_factor(factor)
        names = load.checked_limits(self.policy, limits)
        stored = load.parse(self.store.get_setting(load.SETTING))
        self.store.put_setting(load.SETTING, stored.updated(f, names).to_text())
        self._reread()
        return self.live.by_limit()

    def load_factors(self) -> dict[str, float]:
        """The load factor in force for each limit (1.0: not lowered), as read from the
        store now."""
        self._reread()
        return self.live.by_limit()

    def _now(self) -> float | None:
        return None if self.clock is None else checked(self.clock())

    # accounts -----------------------------------------------------------------------------
    def account_id(self, account: object) -> str:
        """``account`` checked as an account id."""
        return validation.text("account", account)

    def account_settings(self, account: object, plan: object, seats: object) -> Account:
        """The account these arguments describe, checked (for ``put_account`` and its twin)."""
        account_id = self.account_id(account)
        try:
            plan_name, seat_count = validation.account_settings(self.policy, plan, seats)
        except UnknownPlan:  # a plan of a policy the store holds, not read yet: see _build
            self._policy_if_reachable()
            plan_name, seat_count = validation.account_settings(self.policy, plan, seats)
        return Account(account_id, plan_name, seat_count)

    def put_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> tuple[Account, bool]:
        """Create or change an account and return it whole; also says whether it was
        created. ``billing_anchor`` (an aware datetime; None removes it; left out: as it was)
        is when its billing periods renew: monthly on its day (the 31st: a shorter month's
        last), weekly on its weekday, at its time of day, in UTC. An account without one has
        calendar months and ISO weeks in UTC."""
        found = self.account_settings(account, plan, seats)
        if billing_anchor is not UNCHANGED and billing_anchor is not None:
            validation.billing_anchor(billing_anchor)  # checked before anything is written
        created = self.store.put_account(found.id, found.plan, found.seats, self._now())
        if billing_anchor is UNCHANGED:
            # its own terms (overrides, grants, anchor) are part of the answer
            return (found if created else self.get_account(found.id)), created
        anchor = billing_anchor
        return self._run(lambda p: calls.set_billing_anchor(p, found.id, anchor)), created

    def set_account(
        self, account: str, plan: str, seats: int = 1, *, billing_anchor: Anchor = UNCHANGED
    ) -> Account:
        """Create or change an account. Counters keep their windows; the new maxima apply now."""
        return self.put_account(account, plan, seats, billing_anchor=billing_anchor)[0]

    def get_account(self, account: str) -> Account:
        """The account, with its own terms (overrides, the grants in force)."""
        return self._run(lambda p: calls.account(p, account))

    def accounts(
        self, prefix: str = "", cursor: str | None = None, limit: int = listing.DEFAULT_PAGE
    ) -> AccountPage:
        """A page of accounts by id (those whose id starts with ``prefix``), after the page
        whose ``next_cursor`` is ``cursor``."""
        return listing.page(self.store.account_page, self.get_account, prefix, cursor, limit)

    def events(
        self, after: int | None = None, limit: int = 100, account: str | None = None
    ) -> list[Event]:
        """Events (CONTRACT 8) with an id above ``after``, oldest first, at most ``limit``
        (1 to 1000); only ``account``'s unless None. Pass the last id read as ``after`` for
        the next page: ids increase, and none appears later below one already read."""
        since, size = events.after_id(after), events.page_size(limit)
        who = None if account is None else self.account_id(account)
        return self.store.events(since, size, who)

    def ledger(
        self,
        account: str,
        cursor: str | None = None,
        limit: int = 100,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> LedgerPage:
        """A page of the account's ledger (CONTRACT 8), oldest first: at most ``limit`` rows
        (1 to 1000) after the page whose ``next_cursor`` is ``cursor``; only those from
        ``since`` up to (not including) ``until`` when given (aware datetimes)."""
        low, high = _time_range(since, until)
        return ledger_read.page(self.store, account, cursor, limit, low, high)

    def ledger_rows(
        self,
        account: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Row]:
        """Every ledger row from ``since`` to ``until``, of ``account`` or of every account
        (account by account), read a page at a time: for exports of any size."""
        low, high = _time_range(since, until)
        return ledger_read.rows(self.store, account, low, high)

    def set_override(self, account: str, limit: str, max: int | None) -> Account:
        """Replace ``limit``'s max for this account whatever its plan: for the whole account,
        not per seat (a load factor still lowers it); ``max=None`` gives it the plan's again."""
        return self._run(lambda p: calls.set_override(p, account, limit, max))

    def grant(
        self, account: str, limit: str, amount: int, expires_at: datetime | None = None
    ) -> Account:
        """Give the account ``amount`` units of ``limit`` on top of its max until
        ``expires_at`` (an aware datetime) or, without one, until the window open now closes
        (a sliding window: one length from now)."""
        return self._run(lambda p: calls.grant(p, account, limit, amount, expires_at))

    # decisions ----------------------------------------------------------------------------
    def consume(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        """Decide and, if granted, charge every limit of the feature, all or nothing."""
        return self._run(
            lambda p: calls.consume(p, account, feature, amount, partial, idempotency_key, user)
        )

    def check(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Decision:
        """What ``consume`` would answer now; charges nothing, ignores idempotency keys."""
        return self._run(lambda p: calls.check(p, account, feature, amount, partial, user))

    def reserve(
        self,
        account: str,
        feature: str,
        amount: int = 1,
        ttl: float = DEFAULT_TTL,
        *,
        partial: bool = False,
        idempotency_key: str | None = None,
        user: str | None = None,
    ) -> Reservation:
        """Hold units (they count as used) until ``commit()``, ``release()`` or ``ttl`` s."""
        held = self._run(
            lambda p: calls.reserve(
                p, account, feature, amount, ttl, partial, idempotency_key, user
            )
        )
        return Reservation(self, held.hold_id, held.decision, to_datetime(held.expires_at))

    def commit(self, reservation_id: str, amount: int | None = None) -> None:
        """Make a reservation's units final, or settle it at ``amount`` units (see
        ``Reservation.commit``); ``ReservationExpired`` after its expiry."""
        if ids.is_degraded(reservation_id):
            self.guard.settle(reservation_id, validation.settled_amount(amount))
            return
        self._run(lambda p: calls.commit(p, reservation_id, amount))

    def release(self, reservation_id: str) -> None:
        """Return a reservation's units to the windows they came from."""
        if ids.is_degraded(reservation_id):
            self.guard.settle(reservation_id, 0)
            return
        self._run(lambda p: calls.release(p, reservation_id))

    def usage(self, account: str, user: str | None = None) -> list[Meter]:
        """One meter per limit of the account's plan that it has access to; those counted
        per user are ``user``'s (left out without one)."""
        return self._run(lambda p: calls.usage(p, account, user))

    # upkeep -------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Delete expired records now (stores also do this by themselves, a little at a time)."""
        return self.store.sweep(self._now())

    def flush_journal(self) -> int:
        """Charge the journaled degraded grants now (the limiter starts this by itself once
        the store answers again); stops at the first store failure. Returns how many it
        charged (an entry the store already knew, by its idempotency key, is not counted)."""
        journal = self.guard.journal
        if not journal.flushing.acquire(blocking=False):
            return 0  # another thread is at it
        charged = 0
        try:
            while batch := journal.take(FLUSH_BATCH):
                for entry in batch:
                    try:
                        call = calls.record(self.policy, entry)
                        with acting_as(entry.key_id):  # the ledger's who: the grant's key
                            charged += calls.run(self.store, call, entry.now)
                        if self.guard.breaker.failures:
                            self.guard.breaker.succeeded()
                    except StoreUnavailable:
                        self.guard.breaker.failed()
                        return charged
                    except AllowanceError as exc:  # the account was deleted, say: nothing to do
                        log.warning(
                            "journal: dropped a degraded grant for %r: %s", entry.account, exc
                        )
                    journal.done(1)
        finally:
            journal.flushing.release()
        return charged

    def _build(self, make: Callable[[Policy], calls.Call[T]]) -> calls.Call[T]:
        """The call, its arguments checked against the policy in force; a feature or plan it
        does not know sends it to the store's settings first (a policy put there may have
        it: a Limiter that has not read them yet, or not for ``load.REFRESH``)."""
        try:
            return make(self.live.policy)
        except (UnknownFeature, UnknownPlan):
            self._policy_if_reachable()
            return make(self.live.policy)

    def _policy_if_reachable(self) -> None:
        with contextlib.suppress(StoreUnavailable):  # the caller's error stays the answer
            self.policy_now()

    def _run(self, make: Callable[[Policy], calls.Call[T]]) -> T:
        """Run the call ``make`` builds on the store through the breaker; without the
        store, answer by the failure mode. The call is built (its arguments checked) before
        anything is read; again when the policy to decide with has changed meanwhile."""
        call = self._build(make)
        now = self._now()
        guard = self.guard
        breaker = guard.breaker
        try:
            if breaker.open_until is not None:
                breaker.before()
            try:
                policy = self.policy_now()
                if policy is not call.policy:
                    call = make(policy)
                result = calls.run(self.store, call, now)
            except StoreUnavailable as exc:
                exc.retry_after = breaker.failed()
                raise
        except StoreUnavailable as exc:
            return without_store(guard, call, exc, now)
        if breaker.failures:
            breaker.succeeded()
        if guard.journal.entries:
            self._start_flush()
        return result

    def _start_flush(self) -> None:
        journal = self.guard.journal
        if journal and not journal.flushing.locked():
            threading.Thread(
                target=self.flush_journal, name="allowance-journal", daemon=True
            ).start()

    def close(self) -> None:
        if self.guard.journal:
            self.flush_journal()
            if self.guard.journal:
                log.warning(
                    "journal: %d degraded grants could not be charged before closing",
                    len(self.guard.journal),
                )
        self.store.close()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _time_range(
    since: datetime | None, until: datetime | None
) -> tuple[float | None, float | None]:
    low = None if since is None else validation.aware_time("since", since)
    high = None if until is None else validation.aware_time("until", until)
    return low, high


def without_store(
    guard: StoreGuard, call: calls.Call[T], exc: StoreUnavailable, now: float | None
) -> T:
    """What ``call`` answers when the store is unavailable: ``exc`` again, unless it is a
    decision on a feature whose failure mode is ``allow`` (a degraded grant)."""
    req = call.request
    if req is None:
        raise exc
    at = system_clock() if now is None else now
    if call.ttl is None:
        return cast(
            T,
            guard.degrade(
                exc,
                req.feature,
                req.amount,
                req.account,
                req.user,
                req.idempotency_key,
                at,
                call.charge,
            ),
        )
    # a reservation journals under its own id (the caller's key names a reserve, not a
    # charge), so that commit(amount) and release() can settle it while it is queued
    hold_id = ids.new_degraded_reservation_id()
    decision = guard.degrade(
        exc,
        req.feature,
        req.amount,
        req.account,
        req.user,
        journal_key(hold_id),
        at,
        call.charge,
        held=True,
    )
    held: Any = ops.Held(decision, hold_id, at + call.ttl)
    return cast(T, held)
