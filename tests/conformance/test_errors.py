"""Bad input: a clear AllowanceError naming the field, and nothing changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from allowance import (
    AllowanceError,
    InvalidAmount,
    InvalidRequest,
    Limiter,
    UnknownAccount,
    UnknownFeature,
    UnknownPlan,
)


def snapshot(lim: Limiter) -> list[tuple[str, int]]:
    return [(m.limit, m.used) for m in lim.usage("a")]


@pytest.mark.parametrize("amount", [0, -1, 1.5, 10**6 + 1, "lots", True, None, 2.0])
def test_bad_amounts(limiter: Limiter, amount: object) -> None:
    limiter.set_account("a", plan="pro")
    limiter.consume("a", "export.ai", 2)
    before = snapshot(limiter)
    # typed loosely on purpose: the amounts are the wrong types the calls must refuse
    calls: tuple[Callable[..., object], ...] = (limiter.consume, limiter.check, limiter.reserve)
    for call in calls:
        with pytest.raises(InvalidAmount) as info:
            call("a", "export.ai", amount)
        assert info.value.field == "amount"
        assert "amount" in str(info.value) and repr(amount) in str(info.value)
    assert snapshot(limiter) == before


def test_largest_amount_is_accepted(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    assert limiter.consume("a", "background.standard", 10**6).granted == 10**6


def test_unknown_account(limiter: Limiter) -> None:
    with pytest.raises(UnknownAccount, match="'ghost'"):
        limiter.consume("ghost", "export.ai")
    with pytest.raises(UnknownAccount):
        limiter.usage("ghost")
    with pytest.raises(UnknownAccount):
        limiter.get_account("ghost")


@pytest.mark.parametrize("feature", ["export.AI", "transform", "", None, 3])
def test_unknown_feature(limiter: Limiter, feature: object) -> None:
    limiter.set_account("a", plan="pro")
    with pytest.raises(UnknownFeature) as info:
        limiter.consume("a", feature)  # type: ignore[arg-type]
    assert info.value.field == "feature"
    assert snapshot(limiter) == [(m, 0) for m, _ in snapshot(limiter)]


@pytest.mark.parametrize(
    ("plan", "seats", "error"),
    [
        ("gold", 1, UnknownPlan),
        ("Pro", 1, UnknownPlan),
        ("pro", 0, InvalidRequest),
        ("pro", -2, InvalidRequest),
        ("pro", 1.5, InvalidRequest),
        ("pro", "3", InvalidRequest),
    ],
)
def test_bad_account_settings_change_nothing(
    limiter: Limiter, plan: str, seats: object, error: type[AllowanceError]
) -> None:
    limiter.set_account("a", plan="free")
    with pytest.raises(error):
        limiter.set_account("a", plan=plan, seats=seats)  # type: ignore[arg-type]
    assert limiter.get_account("a").plan == "free"


@pytest.mark.parametrize("field", ["account", "idempotency_key", "user"])
@pytest.mark.parametrize("value", ["", "x" * 201, "bad\nline", 7])
def test_bad_strings(limiter: Limiter, field: str, value: object) -> None:
    limiter.set_account("a", plan="pro")
    args: dict[str, object] = {"account": "a", "idempotency_key": None, "user": None}
    args[field] = value
    account = args.pop("account")
    with pytest.raises(InvalidRequest) as info:
        limiter.consume(account, "export.ai", **args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert snapshot(limiter)[0] == ("ai_exports", 0)


@pytest.mark.parametrize("ttl", [0, -5, float("inf"), float("nan"), "soon", 8 * 86400])
def test_bad_ttl(limiter: Limiter, ttl: object) -> None:
    limiter.set_account("a", plan="pro")
    with pytest.raises(InvalidRequest) as info:
        limiter.reserve("a", "export.ai", 1, ttl=ttl)  # type: ignore[arg-type]
    assert info.value.field == "ttl"
    assert snapshot(limiter)[0] == ("ai_exports", 0)


def test_partial_must_be_a_bool(limiter: Limiter) -> None:
    limiter.set_account("a", plan="pro")
    with pytest.raises(InvalidRequest):
        limiter.consume("a", "export.ai", partial="yes")  # type: ignore[arg-type]
