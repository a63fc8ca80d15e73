"""memory:// answers a repeated denial from its memo (``MemoryStore.fast_decide``); SQLite runs
the same engine with no memo. Random timelines through both, every answer compared in full:
reason, limit, remaining, reset, wait, upgrade, sentence and quota. The clock moves to just
before, at and after each window's edges and steps back; requests repeat so that the memo
answers often; writes (grants, reservations, plan changes, sweeps) come in between."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allowance import Decision, Limiter, ManualClock, Policy
from allowance.errors import ReservationExpired, ReservationNotFound

from .test_against_model import POLICIES

START = 1_795_000_000.0  # 2026-11-18T...Z, a Wednesday
# forward steps that land around the edges of 60 s, 1 h, a day, a week; back steps up to 299 s
STEPS = [0.0, 0.001, 0.5, 1.0, 29.0, 59.999, 60.0, 60.001, 3599.999, 3600.0, 86_400.0, 604_800.0]
BACK = [-0.001, -0.5, -1.0, -59.0, -299.0]
ACCOUNTS = ["a", "b"]


def fields(d: Decision) -> dict[str, Any]:
    quota = d.quota
    return {
        "allowed": d.allowed,
        "granted": d.granted,
        "reason": d.reason,
        "limit": d.limit,
        "remaining": d.remaining,
        "resets_at": d.resets_at,
        "retry_after": None if d.retry_after is None else round(d.retry_after, 6),
        "upgrade": d.upgrade,
        "message": d.message,
        "fair_use_exceeded": d.fair_use_exceeded,
        "quota": None
        if quota is None
        else (quota.limit, quota.max, quota.window, quota.remaining, round(quota.reset_after, 6)),
    }


def steps(policy: Policy) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    features = sorted(policy.features)
    plans = [p.name for p in policy.plans]
    ask = st.tuples(
        st.sampled_from(["consume", "consume", "check"]),
        st.sampled_from(ACCOUNTS),
        st.sampled_from(features),
        st.sampled_from([1, 1, 1, 2, 10, 12, 250]),  # 12, 250: a day's, a month's cap
        st.booleans(),
        # asked once per pause, the clock moving by it after each
        st.lists(st.sampled_from(STEPS[:3] * 3 + STEPS + BACK), min_size=1, max_size=8),
    )
    return st.lists(
        st.one_of(
            ask,
            ask,
            ask,
            ask,
            st.tuples(st.just("move"), st.sampled_from(STEPS + BACK)),
            st.tuples(st.just("reserve"), st.sampled_from(ACCOUNTS), st.sampled_from(features)),
            st.tuples(st.just("settle"), st.booleans()),
            st.tuples(
                st.just("plan"),
                st.sampled_from(ACCOUNTS),
                st.sampled_from(plans),
                st.sampled_from([1, 3]),
            ),
            st.tuples(st.just("sweep")),
        ),
        min_size=10,
        max_size=40,
    )


@contextmanager
def limiters(policy: Policy, clock: ManualClock) -> Iterator[tuple[Limiter, Limiter]]:
    with tempfile.TemporaryDirectory() as tmp:
        memo = Limiter(policy, "memory://", clock=clock)
        plain = Limiter(policy, f"sqlite:///{Path(tmp) / 'plain.db'}", clock=clock)
        try:
            yield memo, plain
        finally:
            memo.close()
            plain.close()


def run(policy: Policy, timeline: list[tuple[Any, ...]]) -> None:
    clock = ManualClock(START)
    held: list[tuple[str, str]] = []  # (memo's id, plain's id) of open reservations
    with limiters(policy, clock) as (memo, plain):
        for lim in (memo, plain):
            for account in ACCOUNTS:
                lim.set_account(account, plan=policy.plans[0].name)
        for step in timeline:
            what = step[0]
            if what in ("consume", "check"):
                _, account, feature, amount, partial, pauses = step
                for pause in pauses:
                    got = [
                        fields(getattr(lim, what)(account, feature, amount, partial=partial))
                        for lim in (memo, plain)
                    ]
                    assert got[0] == got[1], f"{step} at {clock()}"
                    clock.advance(pause)
            elif what == "move":
                clock.advance(step[1])
            elif what == "reserve":
                pair = [lim.reserve(step[1], step[2], ttl=90) for lim in (memo, plain)]
                assert fields(pair[0].decision) == fields(pair[1].decision), step
                first, second = pair[0].id, pair[1].id
                if first is not None and second is not None:
                    held.append((first, second))
            elif what == "settle" and held:
                outcomes = []
                for lim, rid in zip((memo, plain), held.pop(0), strict=True):
                    try:
                        (lim.commit if step[1] else lim.release)(rid)
                        outcomes.append("settled")
                    except (ReservationExpired, ReservationNotFound) as exc:
                        outcomes.append(type(exc).__name__)
                assert outcomes[0] == outcomes[1], step
            elif what == "plan":
                for lim in (memo, plain):
                    lim.set_account(step[1], plan=step[2], seats=step[3])
            elif what == "sweep":
                for lim in (memo, plain):
                    lim.sweep()
        for account in ACCOUNTS:  # (not between steps: a read through transact drops the memo)
            assert memo.usage(account) == plain.usage(account)


# the memo serves features decided by the account alone: a policy counting per user is not one
@pytest.mark.parametrize(
    "policy_name", sorted(n for n, p in POLICIES.items() if not p.user_features)
)
def test_memoized_denials_read_as_decided_ones(policy_name: str) -> None:
    policy = POLICIES[policy_name]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(steps(policy))
    def check(timeline: list[tuple[Any, ...]]) -> None:
        run(policy, timeline)

    check()


def test_a_repeated_denial_is_answered_from_the_memo() -> None:
    """The memo is used at all: the second denial of a request is the first one re-timed."""
    clock = ManualClock(START)
    with Limiter(store="memory://", clock=clock) as lim:
        lim.set_account("a", plan="pro")
        lim.consume("a", "transform.virtual_model", 2)
        first = lim.consume("a", "transform.virtual_model")
        clock.advance(10)
        second = lim.consume("a", "transform.virtual_model")
        state = lim.store._accounts["a"]  # type: ignore[attr-defined]
        assert state.denied is not None and len(state.denied) == 1
        assert first.retry_after is not None and second.retry_after is not None
        assert second.retry_after == pytest.approx(first.retry_after - 10)
        assert (second.resets_at, second.message) == (first.resets_at, first.message)
        lim.set_account("a", plan="max")  # a write drops it
        assert state.denied is None
        assert lim.consume("a", "transform.virtual_model").allowed


@pytest.mark.parametrize(
    ("feature", "plan", "fill", "kind"),
    [
        ("doc.render", "basic", 3, "sliding"),  # burst: 3 a minute
        ("doc.print", "basic", 4, "calendar"),  # daily: 12 a calendar day, 3 a print
        ("doc.hd", "plus", 5, "anchored"),  # hd_hourly: 5 an hour from the first
    ],
)
def test_a_memoized_denial_ends_when_its_window_does(
    feature: str, plan: str, fill: int, kind: str
) -> None:
    """Asked again at every step up to the reset, a denial stands until exactly then, and a
    clock stepped back before it was decided asks the engine again."""
    policy = POLICIES["custom"]
    clock = ManualClock(START)
    with Limiter(policy, "memory://", clock=clock) as lim:
        lim.set_account("a", plan=plan)
        assert lim.consume("a", feature, fill).allowed
        clock.advance(1)
        denied = lim.consume("a", feature)
        assert not denied.allowed and denied.retry_after is not None
        assert policy.limits[denied.limit or ""].window.kind == kind
        reset = clock() + denied.retry_after
        for before in (denied.retry_after / 2, 1.0, 0.001):
            clock.set(reset - before)
            assert not lim.consume("a", feature).allowed
        clock.set(START + 0.5)  # stepped back before the denial: not the memo's to answer
        assert lim.consume("a", feature).reason == "limit_reached"
        clock.set(reset)
        assert lim.consume("a", feature).allowed
