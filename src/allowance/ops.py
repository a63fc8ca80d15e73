"""The operations of a ``Limiter`` written once against ``AccountView``: every store runs these
inside its atomic step, so idempotency, reservations and expiry behave the same everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from allowance import adjust, engine, events, idempotency, ledger, owners
from allowance.errors import (
    InvalidRequest,
    LimitExceeded,
    ReservationExpired,
    ReservationNotFound,
    StoreError,
    UnknownPlan,
)
from allowance.ids import reservation_expiry
from allowance.policy import Policy
from allowance.request import Request
from allowance.resilience import degraded_decision
from allowance.state import (
    COMMITTED,
    EXPIRED,
    HELD,
    RELEASED,
    Adjustment,
    Counter,
    Hold,
    Terms,
)
from allowance.types import Account, Decision, Meter, iso, to_datetime
from allowance.view import AccountView
from allowance.windows import BillingWindow

HOLD_KEEP = 86400.0  # a settled hold is remembered this long after its expiry, for retries


@dataclass(frozen=True, slots=True)
class Held:
    """What ``reserve`` returns: the decision, and the hold when granted."""

    decision: Decision
    hold_id: str | None
    expires_at: float | None


def _plan(policy: Policy, view: AccountView) -> str:
    if view.plan not in policy.plan_by_name:
        raise UnknownPlan(
            "plan", view.plan, f"account {view.account_id!r} has a plan the policy lacks"
        )
    return view.plan


def settle_due_holds(policy: Policy, view: AccountView, now: float) -> None:
    """Return the units of held reservations that expired. Cheap when none can have."""
    due = view.next_hold_expiry
    if due is None or now < due:
        return
    for hold in view.due_holds(now):
        counters = owners.counters(policy, view, hold.marks, hold.user)
        engine.release(policy, hold, counters, now)
        owners.save(policy, view, counters, hold.user)
        hold.state = EXPIRED
        view.put_hold(hold)
        if policy.events:
            view.emit(events.expired(hold, now))
        if policy.ledger_keep is not None:
            view.record(ledger.of_hold(policy, ledger.EXPIRY, hold, -hold.amount, now))


def decide(
    policy: Policy,
    view: AccountView,
    req: Request,
    now: float,
    *,
    charge: bool,
    reservation: str | None = None,
) -> tuple[Decision, dict[str, float] | None]:
    """Decide and, when ``charge`` and granted, charge. Returns the marks charged.
    ``reservation``: the hold the charge is for (its ledger rows name it)."""
    plan = _plan(policy, view)
    settle_due_holds(policy, view, now)
    policy = adjust.applied(policy, view.adjustments, now)
    counters = owners.counters(policy, view, policy.limit_names(req.feature), req.user)
    ruling = engine.decide(
        policy, plan, view.seats, req.feature, req.amount, req.partial, counters, now
    )
    if not charge or not ruling.granted:
        return ruling.decision, None
    marks = engine.charge(ruling, counters, now)
    owners.save(policy, view, counters, req.user)
    _emit(policy, view, ruling, plan, req.feature, counters, now, req.user)
    if policy.ledger_keep is not None:
        grant = (ruling.rules, now, req.feature, ruling.granted, req.idempotency_key, req.user,
                 reservation)  # fmt: skip
        view.record_charge(grant)
    return ruling.decision, marks


def _emit(
    policy: Policy,
    view: AccountView,
    ruling: engine.Ruling,
    plan: str,
    feature: str,
    counters: dict[str, Counter],
    now: float,
    user: str | None,
) -> None:
    """Hand the view the events a charge causes, written with it (``events.py``)."""
    if policy.events:
        found = events.crossings(
            policy, ruling, plan, view.seats, feature, counters, now, view.account_id, user
        )
        for event in found:
            view.emit(event)


def consume(policy: Policy, view: AccountView, req: Request, now: float) -> Decision:
    record = idempotency.remembered(policy, view, req, "consume", now)
    if record is not None:
        return Decision.from_json(record.decision, now)
    decision, _ = decide(policy, view, req, now, charge=True)
    idempotency.remember(policy, view, "consume", req, decision, now)
    return decision


def check(policy: Policy, view: AccountView, req: Request, now: float) -> Decision:
    """What ``consume`` would answer now, charging nothing (idempotency keys are ignored)."""
    return decide(policy, view, req, now, charge=False)[0]


def reserve(
    policy: Policy,
    view: AccountView,
    req: Request,
    ttl: float,
    now: float,
    new_id: Callable[[str, float], str],
) -> Held:
    record = idempotency.remembered(policy, view, req, "reserve", now)
    if record is not None:
        return Held(
            Decision.from_json(record.decision, now),
            record.reservation_id,
            record.reservation_expires_at,
        )
    hold_id = new_id(view.account_id, now + ttl)
    decision, marks = decide(policy, view, req, now, charge=True, reservation=hold_id)
    hold: Hold | None = None
    if marks is not None:
        hold = Hold(
            hold_id,
            view.account_id,
            req.feature,
            decision.granted,
            marks,
            now + ttl,
            user=req.user,
        )
        hold.created_at = now
        view.put_hold(hold)
    held = Held(decision, hold.id if hold else None, hold.expires_at if hold else None)
    idempotency.remember(
        policy, view, "reserve", req, decision, now, (held.hold_id, held.expires_at)
    )
    return held


def _hold(view: AccountView, hold_id: str) -> Hold:
    hold = view.get_hold(hold_id)
    if hold is None:
        raise ReservationNotFound(f"reservation: no reservation {hold_id!r}")
    return hold


def commit(
    policy: Policy, view: AccountView, hold_id: str, now: float, amount: int | None = None
) -> None:
    """Make a hold's units final; with ``amount``, settle it at that many units instead
    (``_settle``). Committing twice is harmless (a second ``amount`` changes nothing); after
    expiry it raises."""
    settle_due_holds(policy, view, now)
    hold = view.get_hold(hold_id)
    if hold is None:
        expires = reservation_expiry(hold_id)
        if expires is not None and expires <= now:  # expired, and its record since cleaned up
            raise ReservationExpired(
                f"reservation {hold_id!r} expired before commit; its units were returned"
            )
        raise ReservationNotFound(f"reservation: no reservation {hold_id!r}")
    if hold.state == COMMITTED:
        return
    if hold.state == EXPIRED:
        raise ReservationExpired(
            f"reservation {hold_id!r} expired before commit; its units were returned"
        )
    if hold.state == RELEASED:
        raise ReservationNotFound(f"reservation {hold_id!r} was released; nothing to commit")
    held = hold.amount
    if amount is not None and amount != hold.amount:
        _settle(policy, view, hold, amount, now)
    if policy.ledger_keep is not None:  # the units settled (0: as reserved), and how many
        units = hold.amount - held
        view.record(ledger.of_hold(policy, ledger.COMMIT, hold, units, now, amount=hold.amount))
    hold.state = COMMITTED
    view.put_hold(hold)


def _settle(policy: Policy, view: AccountView, hold: Hold, amount: int, now: float) -> None:
    """Settle ``hold`` at ``amount`` units: fewer go back to the windows they came from; more
    are charged now, as a request of their own, if they fit (``LimitExceeded`` if not, and
    nothing changes). What a caller that reserved an estimate (LLM tokens) does with the real
    count."""
    counters = owners.counters(policy, view, policy.limit_names(hold.feature), hold.user)
    if amount < hold.amount:
        engine.release(policy, hold, counters, now, hold.amount - amount)
    else:
        plan = _plan(policy, view)
        policy = adjust.applied(policy, view.adjustments, now)
        extra = amount - hold.amount
        ruling = engine.decide(policy, plan, view.seats, hold.feature, extra, False, counters, now)
        if not ruling.granted:
            raise LimitExceeded(ruling.decision)
        engine.charge(ruling, counters, now)
        _emit(policy, view, ruling, plan, hold.feature, counters, now, hold.user)
    owners.save(policy, view, counters, hold.user)
    hold.amount = amount


def release(policy: Policy, view: AccountView, hold_id: str, now: float) -> None:
    """Return a hold's units to their windows. Releasing twice, or after expiry, is harmless;
    releasing a committed hold raises (its units are final)."""
    settle_due_holds(policy, view, now)
    hold = _hold(view, hold_id)
    if hold.state in (RELEASED, EXPIRED):
        return
    if hold.state == COMMITTED:
        raise ReservationNotFound(f"reservation {hold_id!r} was committed; its units are final")
    assert hold.state == HELD
    counters = owners.counters(policy, view, hold.marks, hold.user)
    engine.release(policy, hold, counters, now)
    owners.save(policy, view, counters, hold.user)
    hold.state = RELEASED
    view.put_hold(hold)
    if policy.ledger_keep is not None:
        view.record(ledger.of_hold(policy, ledger.RELEASE, hold, -hold.amount, now))


def record(policy: Policy, view: AccountView, req: Request, now: float) -> bool:
    """Charge a degraded grant from the journal (see resilience.py) at the time it was granted:
    every limit of the feature counts ``req.amount``, past its max if need be (the units were
    given). Under ``req.idempotency_key``, so a key the store already knows charges nothing: the
    caller's own retry came first, or this charge's reply was lost. True when it charged."""
    key = req.idempotency_key
    assert key is not None
    found = view.get_idempotency(key)
    if found is not None and found.expires_at > now:
        return False
    plan = _plan(policy, view)
    settle_due_holds(policy, view, now)
    policy = adjust.applied(policy, view.adjustments, now)  # the account's billing periods
    counters = owners.counters(policy, view, policy.limit_names(req.feature), req.user)
    rules = policy.rules(plan, req.feature) or ()
    before = tuple(r.limit.window.used(counters[r.limit.name], now) for r in rules)
    for limit in policy.limits_of(req.feature):
        limit.window.charge(counters[limit.name], req.amount * limit.cost(req.feature), now)
    owners.save(policy, view, counters, req.user)
    decision = degraded_decision(req.amount)
    idempotency.remember(policy, view, "consume", req, decision, now)
    # the levels the late charge crossed, as if charged then (the product still hears of them)
    ruling = engine.Ruling(decision, req.amount, rules, before)
    _emit(policy, view, ruling, plan, req.feature, counters, now, req.user)
    if policy.ledger_keep is not None:
        names = [limit.name for limit in policy.limits_of(req.feature)]
        degraded = {"degraded": True}
        rows = ledger.counted(policy, ledger.CHARGE, now, view.account_id, req.feature, names,
                              req.amount, key, req.user, degraded)  # fmt: skip
        view.record(rows)
    return True


def usage(policy: Policy, view: AccountView, now: float, user: str | None = None) -> list[Meter]:
    """The account's meters; a limit counted per user is metered for ``user`` only (without
    one it is left out: no single number is the account's)."""
    plan = _plan(policy, view)
    settle_due_holds(policy, view, now)
    names = [
        rule.limit.name
        for rule in policy.plan_limits(plan)
        if user is not None or rule.limit.scope == "account"
    ]
    counters = owners.counters(policy, view, names, user)
    policy = adjust.applied(policy, view.adjustments, now)
    return [
        m for m in engine.meters(policy, plan, view.seats, counters, now) if m.limit in counters
    ]


def account(view: AccountView, now: float) -> Account:
    """The account with its own terms in force at ``now``."""
    return adjust.account_of(view.account_id, view.plan, view.seats, view.adjustments, now)


def set_billing_anchor(
    policy: Policy, view: AccountView, anchor: float | None, now: float
) -> Account:
    """Renew the account's billing periods at ``anchor`` (None: calendar months and weeks).
    What the period in force has counted stays counted until the period the new anchor
    puts ``now`` in ends (a new anchor must not hand out a period's units again)."""
    terms = view.adjustments
    before = adjust.applied(policy, terms, now).limits
    terms.billing_anchor = anchor
    after = adjust.applied(policy, terms, now).limits
    starts = {
        name: found.window.period(now)[0]
        for name, found in after.items()
        if isinstance(found.window, BillingWindow)
    }
    moved, was = {}, {}
    for name, counter in view.counters(starts).items():
        start = starts[name]
        if before[name].window.used(counter, now) and (counter.start or start) < start:
            was[name], counter.start, moved[name] = counter.start, start, counter
    if moved:
        view.save_counters(moved)
        for hold in view.due_holds(math.inf):  # every hold still held: its units moved too
            marks = {name: starts[name] for name in moved if hold.marks.get(name) == was[name]}
            if marks:
                hold.marks.update(marks)
                view.put_hold(hold)
    view.save_adjustments()
    if policy.ledger_keep is not None:
        when = None if anchor is None else iso(to_datetime(anchor))
        view.record(
            [ledger.term(ledger.BILLING_ANCHOR, now, view.account_id, None, 0, anchor=when)]
        )
    return account(view, now)


def set_override(
    policy: Policy, view: AccountView, limit: str, most: int | None, now: float
) -> Account:
    """Replace the max of ``limit`` for this account on every plan (None: the plan's again)."""
    adjustments = view.adjustments
    adjustments.setdefault(limit, Adjustment()).max = most
    adjust.prune(adjustments, now)
    view.save_adjustments()
    if policy.ledger_keep is not None:
        row = ledger.term(ledger.OVERRIDE, now, view.account_id, limit, most or 0, max=most)
        view.record([row])
    return account(view, now)


def grant(
    policy: Policy, view: AccountView, limit: str, units: int, until: float | None, now: float
) -> Account:
    """Give ``units`` extra of ``limit`` on top of the max until ``until`` (None: until the
    window holding ``now`` closes, ``adjust.window_end``)."""
    if until is None:
        found = adjust.applied(policy, view.adjustments, now).limits[limit]
        until = adjust.window_end(found, view.counters([limit])[limit], now)
    elif until <= now:
        raise InvalidRequest("expires_at", iso(to_datetime(until)), "is not in the future")
    adjustments = view.adjustments
    adjust.prune(adjustments, now)
    adjustments.setdefault(limit, Adjustment()).grants.append([until, units])
    view.save_adjustments()
    if policy.ledger_keep is not None:
        expires = iso(to_datetime(until))
        row = ledger.term(ledger.GRANT, now, view.account_id, limit, units, expires_at=expires)
        view.record([row])
    return account(view, now)


def replay(
    policy: Policy,
    req: Request,
    plan: str,
    seats: int,
    counters: dict[str, Counter],
    terms: Terms,
    now: float,
    store_granted: int,
    store: str,
) -> Decision:
    """The decision for a request a store decided in one step (Redis decide.lua, PostgreSQL
    decide()): the engine replays it on the counters and the account's terms the store saw,
    which gives every field of the decision, and must agree with the store on the grant."""
    policy = adjust.applied(policy, terms, now)
    view = {n: counters.get(n) or Counter() for n in policy.limit_names(req.feature)}
    ruling = engine.decide(policy, plan, seats, req.feature, req.amount, req.partial, view, now)
    if ruling.granted != store_granted:
        raise StoreError(
            f"{store}: the store granted {store_granted} where the engine grants "
            f"{ruling.granted} ({req.feature} x{req.amount} for {req.account!r})"
        )
    return ruling.decision


def one_step_decision(
    granted: int, remaining: int | None, fair_use: bool, replay: Callable[[], Decision]
) -> Decision:
    """The decision for a request a store decided in one step. A denial is the engine's
    (``replay()``, which also checks the store's grant). A grant is built from what the
    store returned; its sentence and quota, and that check, come from one replay when first
    read, since most callers of a hot endpoint never read them."""
    if granted == 0:
        return replay()  # which limit, until when, which plan: the engine's
    memo: list[Decision] = []  # not functools.cache: building one costs more than this call

    def replayed() -> Decision:
        if not memo:
            memo.append(replay())
        return memo[0]

    return Decision.grant(
        granted,
        remaining,
        lambda: replayed().message,
        fair_use_exceeded=fair_use,
        quota=lambda: replayed().quota,
    )
