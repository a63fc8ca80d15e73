"""Random timelines through the real ``Limiter`` and ``AsyncLimiter`` on every store, each
answer compared with the reference model (``reference.py``; the machine is ``timeline.py``),
clock steps forward and back across every kind of window boundary included, on the built-in
policy and a small custom one with every window kind (calendar day, ISO week and a month in
Europe/Paris, sliding, anchored, billing months and weeks with accounts' anchors set and
changed), per-seat cells, fair use, per-request caps and credits
(features costing more than one unit of a limit), and a team-space policy whose limits count
per account, per user in an account and per user across accounts.

``make test`` runs a few examples per store, policy and API; the heavy profile is marked
``faults`` (``make test-faults``)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from allowance import Policy, builtin_policy, parse_policy
from conftest import STORE_FACTORIES

from .drivers import DRIVERS
from .timeline import make_machine

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
    costs: {doc.print: 3}
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
      top: {max: 6, per_seat: true, per_request: 4}
  weekly_print:
    features: [doc.print]
    window: {type: calendar, unit: week}
    plans:
      basic: 30
      plus: {max: 60, per_request: 10}
      top: {max: unlimited, per_request: 25}
  hd_hourly:
    features: [doc.hd]
    window: {type: anchored, length: 1h}
    plans:
      basic: no_access
      plus: 5
      top: {max: unlimited, per_seat: true, fair_use: 8}
  print_billed:
    features: [doc.print]
    window: {type: billing, unit: month}
    plans:
      basic: 9
      plus: {max: 4, per_seat: true}
      top: unlimited
  hd_billed_weekly:
    features: [doc.hd]
    window: {type: billing, unit: week}
    plans:
      basic: no_access
      plus: 7
      top: {max: unlimited, fair_use: 6}
  hd_monthly:
    features: [doc.hd]
    costs: {doc.hd: 2}
    window: {type: calendar, unit: month, timezone: Europe/Paris}
    plans:
      basic: no_access
      plus: 20
      top: {max: 40, per_seat: true, per_request: 3}
"""

# A space's credits shared by its users, and what each user may do in the space and across
# every space; small numbers so that every scope fills within a few steps.
SCOPED_POLICY = """\
version: 1
timezone: UTC
plans: [free, team]
features:
  ai.generate: {title: Generate}
  ai.upscale: {title: Upscale}
  export: {title: Export}
  share: {title: Share}
limits:
  space_credits:
    features: [ai.generate, ai.upscale]
    costs: {ai.upscale: 3}
    window: {type: calendar, unit: day}
    plans:
      free: 10
      team: {max: 8, per_seat: true, per_request: 6}
  generations_per_user:
    features: [ai.generate]
    scope: user
    window: {type: sliding, length: 60s}
    plans:
      free: 3
      team: {max: 5, per_request: 4}
  upscales_per_user:
    features: [ai.upscale]
    scope: user
    costs: {ai.upscale: 2}
    window: {type: anchored, length: 1h}
    plans:
      free: no_access
      team: {max: unlimited, fair_use: 4}
  exports_everywhere:
    features: [export, ai.upscale]
    scope: user_global
    window: {type: calendar, unit: week}
    plans:
      free: 4
      team: {max: 9, per_request: 5}
  exports_in_space:
    features: [export]
    scope: user
    window: {type: calendar, unit: day, timezone: Europe/Paris}
    plans: {free: 2, team: 6}
  shares_billed:
    features: [share, export]
    window: {type: billing, unit: month}
    plans: {free: 5, team: 12}
"""

POLICIES: dict[str, Policy] = {
    "builtin": builtin_policy(),
    "custom": parse_policy(CUSTOM_POLICY, "custom"),
    "scoped": parse_policy(SCOPED_POLICY, "scoped"),
}

# examples per store, policy and API: the 20 quick runs take ~30 s on two cores (make test);
# the heavy ones ~10 min (make test-faults)
PROFILES = {
    "quick": settings(
        max_examples=8,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    ),
}
PROFILES["heavy"] = settings(PROFILES["quick"], max_examples=150)


@pytest.mark.parametrize("profile", ["quick", pytest.param("heavy", marks=pytest.mark.faults)])
@pytest.mark.parametrize("api", sorted(DRIVERS))
@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("store_kind", sorted(STORE_FACTORIES))
def test_limiter_agrees_with_model(
    store_kind: str, policy_name: str, api: str, profile: str, request: pytest.FixtureRequest
) -> None:
    factory = STORE_FACTORIES[store_kind]
    policy = POLICIES[policy_name]
    machine = make_machine(
        policy,
        lambda path: factory(request, path),
        DRIVERS[api],
        f"{policy_name}_{store_kind}_{api}",
    )
    run_state_machine_as_test(machine, settings=PROFILES[profile])
