"""Random timelines through the real ``Limiter`` on every store, each answer compared with the
reference model (``reference.py``): consume / check / reserve / commit / release / plan and
seat changes / idempotency keys / clock steps from 1 s to 7 days, on the built-in policy and a
small custom one with a calendar day, a sliding window and per-seat cells."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from allowance import (
    Decision,
    IdempotencyConflict,
    Limiter,
    ManualClock,
    Meter,
    Policy,
    Reservation,
    ReservationExpired,
    ReservationNotFound,
    builtin_policy,
    parse_policy,
)
from conftest import START, STORE_FACTORIES

from . import reference
from .reference import Model, ModelConflict, ModelExpired

# Small numbers so that every window kind fills up within a few steps.
CUSTOM_POLICY = """\
version: 1
timezone: UTC
plans: [basic, plus, top]
features:
  doc.render: {title: Render}
  doc.print: {title: Print}
  doc.hd: {title: HD render}
limits:
  daily:
    features: [doc.render, doc.print]
    window: {type: calendar, unit: day}
    plans:
      basic: 12
      plus: 40
      top: {max: unlimited, fair_use: 15}
  burst:
    features: [doc.render]
    window: {type: sliding, length: 60s}
    plans:
      basic: 3
      plus: {max: 2, per_seat: true}
      top: {max: 6, per_seat: true}
  weekly_print:
    features: [doc.print]
    window: {type: calendar, unit: week}
    plans: {basic: 30, plus: 60, top: unlimited}
  hd_hourly:
    features: [doc.hd]
    window: {type: anchored, length: 1h}
    plans:
      basic: no_access
      plus: 5
      top: {max: unlimited, per_seat: true, fair_use: 8}
"""

POLICIES: dict[str, Policy] = {
    "builtin": builtin_policy(),
    "custom": parse_policy(CUSTOM_POLICY, "custom"),
}
ACCOUNTS = ("acct-a", "acct-b")
STEPS = (1, 30, 59, 60, 3600, 23 * 3600 + 59 * 60 + 59, 86400, 7 * 86400)
TTLS = (30, 60, 900, 3600)
KEYS = ("k1", "k2")

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    assert value.utcoffset() == timedelta(0), value
    return value.timestamp()


def actual_decision(d: Decision) -> dict[str, Any]:
    return {
        "allowed": d.allowed,
        "granted": d.granted,
        "reason": d.reason,
        "limit": d.limit,
        "remaining": d.remaining,
        "resets_at": ts(d.resets_at),
        "retry_after": d.retry_after,
        "upgrade": d.upgrade,
        "fair_use_exceeded": d.fair_use_exceeded,
    }


def expected_decision(d: reference.Decision) -> dict[str, Any]:
    return {
        "allowed": d.allowed,
        "granted": d.granted,
        "reason": d.reason,
        "limit": d.limit,
        "remaining": d.remaining,
        "resets_at": d.resets_at,
        "retry_after": d.retry_after,
        "upgrade": d.upgrade,
        "fair_use_exceeded": d.fair_use_exceeded,
    }


def assert_same_decision(what: str, actual: Decision, expected: reference.Decision) -> None:
    got, want = actual_decision(actual), expected_decision(expected)
    a, b = got["retry_after"], want["retry_after"]
    if a is not None and b is not None and abs(a - b) <= 1e-6:
        got["retry_after"] = b
    assert got == want, f"{what}: library {got} != model {want}"


def actual_meters(meters: list[Meter]) -> list[tuple[Any, ...]]:
    return [
        (
            m.limit,
            tuple(m.features),
            m.used,
            m.max,
            m.remaining,
            ts(m.window_start),
            ts(m.resets_at),
        )
        for m in meters
    ]


def expected_meters(meters: list[reference.Meter]) -> list[tuple[Any, ...]]:
    return [
        (m.limit, m.features, m.used, m.max, m.remaining, m.window_start, m.resets_at)
        for m in meters
    ]


def make_machine(
    policy: Policy, store_factory: Callable[[Path], str], name: str
) -> type[RuleBasedStateMachine]:
    features = sorted(policy.features)
    plans = [p.name for p in policy.plans]
    accounts = st.sampled_from(ACCOUNTS)
    amounts = st.one_of(st.integers(1, 3), st.integers(1, 40))

    class Timeline(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tmp = tempfile.TemporaryDirectory(prefix="allowance-model-")
            self.clock = ManualClock(START)
            self.lim = Limiter(policy, store=store_factory(Path(self.tmp.name)), clock=self.clock)
            self.model = Model(policy, self.clock())
            self.open_holds: dict[int, Reservation] = {}  # model hold id -> reservation
            self.last_resets_at: float | None = None

        def teardown(self) -> None:
            self.lim.close()
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

        @rule(seconds=st.sampled_from(STEPS))
        def advance(self, seconds: float) -> None:
            self.clock.advance(seconds)
            self.model.advance(seconds)
            assert self.clock() == self.model.now

        @rule(
            account=accounts,
            index=st.integers(0, 10),
            to_denial=st.booleans(),
            offset=st.sampled_from((-1, 0, 0)),
        )
        def jump_to_edge(self, account: str, index: int, to_denial: bool, offset: int) -> None:
            """Move the clock to just before or exactly at a window's end or a resets_at."""
            if to_denial:
                edges = [] if self.last_resets_at is None else [self.last_resets_at]
            else:
                edges = sorted(
                    {m.resets_at for m in self.model.usage(account) if m.resets_at is not None}
                )
            if not edges:
                return
            step = edges[index % len(edges)] + offset - self.model.now
            if step > 0:
                self.advance(step)

        @rule(account=accounts, plan=st.sampled_from(plans), seats=st.integers(1, 3))
        def set_account(self, account: str, plan: str, seats: int) -> None:
            self.lim.set_account(account, plan, seats)
            self.model.set_account(account, plan, seats)

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            partial=st.booleans(),
        )
        def consume(self, account: str, feature: str, amount: int, partial: bool) -> None:
            actual = self.lim.consume(account, feature, amount, partial=partial)
            expected = self.model.consume(account, feature, amount, partial)
            assert_same_decision(
                f"consume({feature}, {amount}, partial={partial})", actual, expected
            )

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=st.integers(1, 3),
            partial=st.booleans(),
            times=st.integers(2, 20),
            gap=st.sampled_from((1, 30, 60)),
        )
        def drip(
            self, account: str, feature: str, amount: int, partial: bool, times: int, gap: int
        ) -> None:
            """A run of small requests a few seconds apart: fills the daily limits."""
            for _ in range(times):
                self.consume(account, feature, amount, partial)
                self.advance(gap)

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            partial=st.booleans(),
        )
        def check(self, account: str, feature: str, amount: int, partial: bool) -> None:
            actual = self.lim.check(account, feature, amount, partial=partial)
            expected = self.model.check(account, feature, amount, partial)
            assert_same_decision(f"check({feature}, {amount}, partial={partial})", actual, expected)
            self.last_resets_at = expected.resets_at or self.last_resets_at

        def keyed(self, account: str, key: str, feature: str, amount: int) -> None:
            try:
                expected = self.model.consume(account, feature, amount, key=key)
            except ModelConflict:
                with pytest.raises(IdempotencyConflict):
                    self.lim.consume(account, feature, amount, idempotency_key=key)
                return
            actual = self.lim.consume(account, feature, amount, idempotency_key=key)
            assert_same_decision(f"consume({feature}, {amount}, key={key})", actual, expected)

        @rule(
            account=accounts,
            key=st.sampled_from(KEYS),
            feature=st.sampled_from(features),
            amount=amounts,
        )
        def consume_with_key(self, account: str, key: str, feature: str, amount: int) -> None:
            self.keyed(account, key, feature, amount)

        @rule(account=accounts, key=st.sampled_from(KEYS), same=st.booleans())
        def reuse_key(self, account: str, key: str, same: bool) -> None:
            seen = self.model.keys.get((account, key))
            if seen is None:
                return
            _, feature, amount, _ = seen
            amount = amount if same else amount % 40 + 1
            # check() ignores keys: a fresh answer, never the stored one, never a conflict
            actual = self.lim.check(account, feature, amount, idempotency_key=key)
            expected = self.model.check(account, feature, amount)
            assert_same_decision(f"check({feature}, {amount}, key={key})", actual, expected)
            self.keyed(account, key, feature, amount)

        @rule(
            account=accounts,
            feature=st.sampled_from(features),
            amount=amounts,
            ttl=st.sampled_from(TTLS),
            partial=st.booleans(),
        )
        def reserve(self, account: str, feature: str, amount: int, ttl: int, partial: bool) -> None:
            r = self.lim.reserve(account, feature, amount, ttl, partial=partial)
            hold, expected, expires_at = self.model.reserve(account, feature, amount, ttl, partial)
            assert_same_decision(
                f"reserve({feature}, {amount}, partial={partial})", r.decision, expected
            )
            assert (r.id is None) == (hold is None), (r.id, hold)
            if hold is not None:
                assert ts(r.expires_at) == expires_at
                self.open_holds[hold] = r

        def pick(self, index: int) -> tuple[int, Reservation] | None:
            if not self.open_holds:
                return None
            hold = sorted(self.open_holds)[index % len(self.open_holds)]
            return hold, self.open_holds.pop(hold)

        @rule(index=st.integers(0, 20))
        def commit(self, index: int) -> None:
            picked = self.pick(index)
            if picked is None:
                return
            hold, r = picked
            try:
                self.model.commit(hold)
            except ModelExpired:
                with pytest.raises(ReservationExpired):
                    r.commit()
                return
            r.commit()

        @rule(index=st.integers(0, 20))
        def release(self, index: int) -> None:
            picked = self.pick(index)
            if picked is None:
                return
            hold, r = picked
            live = self.model.is_live(hold)
            self.model.release(hold)
            if live:
                r.release()
            else:  # already expired: its units went back; releasing it is at most an error
                with contextlib.suppress(ReservationExpired, ReservationNotFound):
                    r.release()

        @invariant()
        def meters_agree(self) -> None:
            if not self.model.accounts:
                return
            for account in ACCOUNTS:
                got = actual_meters(self.lim.usage(account))
                want = expected_meters(self.model.usage(account))
                assert got == want, f"usage({account}): library {got} != model {want}"

    Timeline.__name__ = Timeline.__qualname__ = f"Timeline_{name}"
    return Timeline


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("store_kind", sorted(STORE_FACTORIES))
def test_limiter_agrees_with_model(
    store_kind: str, policy_name: str, request: pytest.FixtureRequest
) -> None:
    factory = STORE_FACTORIES[store_kind]
    machine = make_machine(
        POLICIES[policy_name],
        lambda path: factory(request, path),
        f"{policy_name}_{store_kind}",
    )
    run_state_machine_as_test(machine, settings=SETTINGS)
