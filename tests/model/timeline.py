"""The state machine of the model comparison (``test_against_model.py``): random timelines through
a real ``Limiter`` or ``AsyncLimiter``, each answer and meter compared with the reference model
(``reference.py``). Rules: consume / check / reserve / commit (as held, or settled at another
amount) / release / plan and seat changes / idempotency keys / load factors, and a clock that
moves forward by 1 s to 7 days, steps back by 0.5 s to 5 minutes (KEEP_AFTER), and lands just
before, at or after the edges of windows and of minutes, hours, days, ISO weeks and months (UTC
and another time zone), either way. On a policy with limits counted per user, every request
names one of two users (always for a feature that counts per user, sometimes otherwise) and the
meters are compared for the account and for each user."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from allowance import (
    IdempotencyConflict,
    LimitExceeded,
    ManualClock,
    Policy,
    ReservationExpired,
    ReservationNotFound,
)
from conftest import START

from .drivers import (
    Driver,
    Held,
    actual_meters,
    assert_same_decision,
    expected_meters,
    ts,
)
from .reference import Model, ModelConflict, ModelExpired, ModelLimitExceeded, period

ACCOUNTS = ("acct-a", "acct-b")
USERS = ("ann", "bob")  # both work in both accounts
# how far behind the latest time the clock may go: the promise of docs/guarantees.md, kept
# here rather than read from windows.py, so that a store keeping less is caught
KEEP_AFTER = 300.0
STEPS = (1, 30, 59, 60, 3600, 23 * 3600 + 59 * 60 + 59, 86400, 7 * 86400)
BACK_STEPS = (0.5, 1, 2, 5, 30, 59, 60, 61, 299, 300, 3600)  # at most KEEP_AFTER behind
# the boundaries a step crosses: every window's reset lies on one of these or on a grant's time
# plus a window's length (jump_to_edge)
BOUNDARIES = ("minute", "hour", "day", "week", "month")
ZONES = (ZoneInfo("UTC"), ZoneInfo("Europe/Paris"))
NEAR = (-2, -1, -0.5, 0, 0.5, 1, 5)  # where a step lands, seconds from the boundary
TTLS = (30, 60, 900, 3600)
KEYS = ("k1", "k2")
LOAD_FACTORS = (0.5, 0.34, 0.75, 1.0)
# billing anchors: the 31st (clamped in shorter months), a leap day, mid-month, a weekday
# at a time of day, and near the timeline's own start
ANCHORS = tuple(
    datetime.fromisoformat(t)
    for t in (
        "2026-01-31T09:30:00+00:00",
        "2028-02-29T12:00:00+00:00",
        "2026-03-15T00:00:00+00:00",
        "2026-11-26T18:00:00+00:00",
        "2026-11-23T15:10:30+01:00",
    )
)


def around(t: float, boundary: str, zone: ZoneInfo) -> tuple[float, float]:
    """The last ``boundary`` at or before t and the next one after it."""
    if boundary == "minute":
        start = t - t % 60
        return start, start + 60
    if boundary == "hour":
        start = t - t % 3600
        return start, start + 3600
    return period(t, boundary, zone)


def make_machine(
    policy: Policy,
    store_factory: Callable[[Path], str],
    driver: Callable[[Policy, str, ManualClock], Driver],
    name: str,
) -> type[RuleBasedStateMachine]:
    features = sorted(policy.features)
    limit_names = sorted(policy.limits)
    plans = [p.name for p in policy.plans]
    accounts = st.sampled_from(ACCOUNTS)
    amounts = st.one_of(st.integers(1, 3), st.integers(1, 40))
    per_user = bool(policy.user_features)
    users = st.one_of(st.none(), st.sampled_from(USERS)) if per_user else st.none()
    meter_users: tuple[str | None, ...] = (None, *USERS) if per_user else (None,)

    def who(feature: str, user: str | None) -> str | None:
        """A feature that counts per user always has one (a request without is refused)."""
        return USERS[0] if user is None and feature in policy.user_features else user

    class Timeline(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tmp = tempfile.TemporaryDirectory(prefix="allowance-model-")
            self.clock = ManualClock(START)
            self.lim = driver(policy, store_factory(Path(self.tmp.name)), self.clock)
            self.model = Model(policy, self.clock())
            self.latest = self.model.now
            self.open_holds: dict[int, Held] = {}  # model hold id -> reservation
            self.last_resets_at: float | None = None

        def teardown(self) -> None:
            try:
                self.lim.close()
            finally:
                self.tmp.cleanup()

        @initialize(
            plan_a=st.sampled_from(plans),
            plan_b=st.sampled_from(plans),
            seats_a=st.integers(1, 3),
            seats_b=st.integers(1, 3),
        )
        def create_accounts(self, plan_a: str, plan_b: str, seats_a: int, seats_b: int) -> None:
            for account, plan, seats in (
                (ACCOUNTS[0], plan_a, seats_a),
                (ACCOUNTS[1], plan_b, seats_b),
            ):
                self.lim.set_account(account, plan, seats)
                self.model.set_account(account, plan, seats)

        # time ------------------------------------------------------------------------------
        def move_to(self, t: float) -> None:
            """Never more than KEEP_AFTER behind the latest time yet: a store may drop a
            counter that long after its window closed (on a write, a sweep, a Redis TTL)."""
            t = max(t, self.latest - KEEP_AFTER)
            self.latest = max(self.latest, t)
            self.clock.set(t)
            self.model.now = t
            assert self.clock() == self.model.now

        @rule(seconds=st.sampled_from(STEPS))
        def advance(self, seconds: float) -> None:
            self.move_to(self.model.now + seconds)

        @rule(seconds=st.sampled_from(BACK_STEPS))
        def step_back(self, seconds: float) -> None:
            self.move_to(self.model.now - seconds)

        @rule(
            boundary=st.sampled_from(BOUNDARIES),
            zone=st.sampled_from(ZONES),
            back=st.booleans(),
            near=st.sampled_from(NEAR),
        )
        def cross(self, boundary: str, zone: ZoneInfo, back: bool, near: float) -> None:
            """Step to just before, at or after the next boundary, or back across the last."""
            last, nxt = around(self.model.now, boundary, zone)
            self.move_to(last - abs(near) - 0.5 if back else nxt + near)

        @rule(
            account=accounts,
            index=st.integers(0, 10),
            to_denial=st.booleans(),
            offset=st.sampled_from((-1, 0, 0, 1)),
            back=st.sampled_from((0, 0, 1, 2, 60)),
        )
        def jump_to_edge(
            self, account: str, index: int, to_denial: bool, offset: int, back: float
        ) -> None:
            """Move the clock to just before, at or after a window's end or a resets_at, then
            maybe a little back."""
            if to_denial:
                edges = [] if self.last_resets_at is None else [self.last_resets_at]
            else:
                meters = self.model.meters(account)
                edges = sorted({m.resets_at for m in meters if m.resets_at is not None})
            if edges:
                self.move_to(edges[index % len(edges)] + offset)
                if back:
                    self.consume(account, features[index % len(features)], 1, True, None)
                    self.step_back(back)

        # accounts and decisions ------------------------------------------------------------
        @rule(
            factor=st.sampled_from(LOAD_FACTORS),
            limit=st.one_of(st.none(), st.sampled_from(limit_names)),
        )
        def set_load_factor(self, factor: float, limit: str | None) -> None:
            self.lim.set_load_factor(factor, limit)
            self.model.set_load_factor(factor, limit)

        @rule(
            account=accounts,
            limit=st.sampled_from(limit_names),
            most=st.one_of(st.none(), st.integers(0, 12)),
        )
        def set_override(self, account: str, limit: str, most: int | None) -> None:
            if account in self.model.accounts:
                self.lim.set_override(account, limit, most)
                self.model.set_override(account, limit, most)

        @rule(
            account=accounts,
            limit=st.sampled_from(limit_names),
            units=st.integers(1, 5),
            lasts=st.one_of(st.none(), st.sampled_from((0.5, 30.0, 3600.0, 86400.0))),
        )
        def grant(self, account: str, limit: str, units: int, lasts: float | None) -> None:
            if account in self.model.accounts:
                # the model gets the instant an aware datetime holds (whole microseconds)
                ends = (
                    None if lasts is None else datetime.fromtimestamp(self.model.now + lasts, UTC)
                )
                self.lim.grant(account, limit, units, ends)
                self.model.grant(account, limit, units, None if ends is None else ends.timestamp())

        @rule(account=accounts, plan=st.sampled_from(plans), seats=st.integers(1, 3))
        def set_account(self, account: str, plan: str, seats: int) -> None:
            self.lim.set_account(account, plan, seats)
            self.model.set_account(account, plan, seats)

        @rule(account=accounts, anchor=st.sampled_from([*ANCHORS, None]))
        def set_billing_anchor(self, account: str, anchor: datetime | None) -> None:
            if account in self.model.accounts:  # None: the anchor removed
                plan, seats = self.model.accounts[account]
                self.lim.set_account(account, plan, seats, anchor)
                at = None if anchor is None else anchor.timestamp()
                self.model.set_account(account, plan, seats, at)

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            partial=st.booleans(),
            user=users,
        )
        def consume(
            self, account: str, feature: str, amount: int, partial: bool, user: str | None
        ) -> None:
            user = who(feature, user)
            actual = self.lim.consume(account, feature, amount, partial, user=user)
            expected = self.model.consume(account, feature, amount, partial, user=user)
            assert_same_decision(
                f"consume({feature}, {amount}, partial={partial}, user={user})", actual, expected
            )

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=st.integers(1, 3),
            partial=st.booleans(),
            times=st.integers(2, 20),
            gap=st.sampled_from((1, 30, 60, -1)),
            user=users,
        )
        def drip(
            self,
            account: str,
            feature: str,
            amount: int,
            partial: bool,
            times: int,
            gap: int,
            user: str | None,
        ) -> None:
            """A run of small requests a few seconds apart (or a clock going back a second at a
            time): fills the daily limits."""
            for _ in range(times):
                self.consume(account, feature, amount, partial, user)
                self.move_to(self.model.now + gap)

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            partial=st.booleans(),
            user=users,
        )
        def check(
            self, account: str, feature: str, amount: int, partial: bool, user: str | None
        ) -> None:
            user = who(feature, user)
            actual = self.lim.check(account, feature, amount, partial, user=user)
            expected = self.model.check(account, feature, amount, partial, user)
            assert_same_decision(
                f"check({feature}, {amount}, partial={partial}, user={user})", actual, expected
            )
            self.last_resets_at = expected.resets_at or self.last_resets_at

        def keyed(
            self, account: str, key: str, feature: str, amount: int, user: str | None
        ) -> None:
            user = who(feature, user)
            what = f"consume({feature}, {amount}, key={key}, user={user})"
            try:
                expected = self.model.consume(account, feature, amount, key=key, user=user)
            except ModelConflict:
                with pytest.raises(IdempotencyConflict):
                    self.lim.consume(account, feature, amount, False, key, user)
                return
            actual = self.lim.consume(account, feature, amount, False, key, user)
            assert_same_decision(what, actual, expected)

        @rule(
            account=accounts,
            key=st.sampled_from(KEYS),
            feature=st.sampled_from(features),
            amount=amounts,
            user=users,
        )
        def consume_with_key(
            self, account: str, key: str, feature: str, amount: int, user: str | None
        ) -> None:
            self.keyed(account, key, feature, amount, user)

        @rule(
            account=accounts,
            key=st.sampled_from(KEYS),
            same=st.booleans(),
            same_user=st.booleans(),
        )
        def reuse_key(self, account: str, key: str, same: bool, same_user: bool) -> None:
            """The key again: the same request, another amount, or another user."""
            seen = self.model.keys.get((account, key))
            if seen is None:
                return
            _, feature, amount, user, _ = seen
            amount = amount if same else amount % 40 + 1
            if not same_user and per_user:
                user = USERS[(USERS.index(user) + 1) % len(USERS)] if user else USERS[1]
            # check() ignores keys: a fresh answer, never the stored one, never a conflict
            actual = self.lim.check(account, feature, amount, False, key, user)
            expected = self.model.check(account, feature, amount, user=user)
            assert_same_decision(f"check({feature}, {amount}, key={key})", actual, expected)
            self.keyed(account, key, feature, amount, user)

        # reservations ----------------------------------------------------------------------
        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            ttl=st.sampled_from(TTLS),
            partial=st.booleans(),
            user=users,
        )
        def reserve(
            self,
            account: str,
            feature: str,
            amount: int,
            ttl: int,
            partial: bool,
            user: str | None,
        ) -> None:
            user = who(feature, user)
            r = self.lim.reserve(account, feature, amount, ttl, partial, user)
            hold, expected, expires_at = self.model.reserve(
                account, feature, amount, ttl, partial, user
            )
            assert_same_decision(
                f"reserve({feature}, {amount}, partial={partial})", r.decision, expected
            )
            assert (r.id is None) == (hold is None), (r.id, hold)
            if hold is not None:
                assert ts(r.expires_at) == expires_at
                self.open_holds[hold] = r

        def pick(self, index: int) -> tuple[int, Held] | None:
            if not self.open_holds:
                return None
            hold = sorted(self.open_holds)[index % len(self.open_holds)]
            return hold, self.open_holds.pop(hold)

        @rule(index=st.integers(0, 20), amount=st.one_of(st.none(), amounts))
        def commit(self, index: int, amount: int | None) -> None:
            """Settled as held, or at another amount (the real count of an estimate)."""
            picked = self.pick(index)
            if picked is None:
                return
            hold, r = picked
            try:
                self.model.commit(hold, amount)
            except ModelExpired:
                with pytest.raises(ReservationExpired):
                    r.commit(amount)
                return
            except ModelLimitExceeded as refused:
                with pytest.raises(LimitExceeded) as info:
                    r.commit(amount)
                assert_same_decision(f"commit({amount})", info.value.decision, refused.decision)
                self.open_holds[hold] = r  # kept: it may still be committed or released
                return
            r.commit(amount)

        @rule(index=st.integers(0, 20))
        def release(self, index: int) -> None:
            picked = self.pick(index)
            if picked is None:
                return
            hold, r = picked
            if self.model.release(hold):
                r.release()
            else:  # already expired: its units went back; releasing it is at most an error
                with contextlib.suppress(ReservationExpired, ReservationNotFound):
                    r.release()

        @invariant()
        def meters_agree(self) -> None:
            if not self.model.accounts:
                return
            for account in ACCOUNTS:
                for user in meter_users:
                    got = actual_meters(self.lim.usage(account, user))
                    want = expected_meters(self.model.usage(account, user))
                    assert got == want, f"usage({account}, {user}): library {got} != model {want}"

    Timeline.__name__ = Timeline.__qualname__ = f"Timeline_{name}"
    return Timeline
