"""``load.py``: the stored setting read back safely, and what a Limiter does when reading it
fails (no store needed: a memory store that fails on purpose)."""

from __future__ import annotations

import pytest

from allowance import Limiter, StoreError, StoreUnavailable, load
from allowance.stores.memory import MemoryStore


def test_the_setting_reads_back_and_a_bad_one_counts_as_none() -> None:
    factors = load.Factors().updated(0.5, None).updated(0.8, ("ai_exports",))
    again = load.parse(factors.to_text())
    assert again == factors
    assert (again.of("ai_exports"), again.of("exports")) == (0.8, 0.5)
    for raw in (
        None,
        "",
        "not json",
        "[]",
        '{"default": 2}',
        '{"limits": {"a": 0}}',
        '{"default": true}',
        '{"limits": []}',
    ):
        assert load.parse(raw) == load.Factors(), raw
    assert load.Factors(0.5, (("a", 0.8),)).updated(0.3, None) == load.Factors(0.3)
    # a named factor equal to the default is not kept apart
    assert load.Factors(0.5).updated(0.5, ("a",)) == load.Factors(0.5)


class FailingSettings(MemoryStore):
    """Reads its settings as a server store does (not on every call), and fails on demand."""

    settings_local = False
    error: Exception | None = None

    def get_setting(self, name: str) -> str | None:
        if self.error is not None:
            raise self.error
        return super().get_setting(name)


def test_a_setting_it_cannot_read_leaves_the_factors_read_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "REFRESH", 0.0)  # read on every call
    store = FailingSettings()
    with Limiter(store=store) as lim:
        lim.set_account("a", plan="pro")
        lim.set_load_factor(0.5, ["ai_exports"])
        store.error = StoreError("corrupt")
        d = lim.consume("a", "export.ai", 20, partial=True)
        assert d.granted == 15  # still lowered
        store.error = StoreUnavailable("down")
        with pytest.raises(StoreUnavailable):  # deny mode: the read's failure is the call's
            lim.consume("a", "export.ai")
        store.error = None
        assert lim.consume("a", "export.ai").reason == "limit_reached"


def test_an_allow_mode_decision_degrades_when_the_read_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(load, "REFRESH", 0.0)
    store = FailingSettings()
    with Limiter(store=store, on_store_error="allow") as lim:
        lim.set_account("a", plan="pro")
        store.error = StoreUnavailable("down")
        d = lim.consume("a", "export.ai")
        assert d.allowed and d.degraded
