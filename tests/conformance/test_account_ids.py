"""``Store.account_ids()``: every account of the store, sorted the same way on every store
(what ``policy diff --store`` walks)."""

from __future__ import annotations

from allowance import Limiter


def test_every_account_is_listed_once_in_order(store_url: str) -> None:
    with Limiter(store=store_url) as lim:
        assert lim.store.account_ids() == []
        names = ["zeta", "alpha", "team/42", "Ünïcode", "a{b}", "beta"]
        for name in names:
            lim.set_account(name, plan="free")
        lim.set_account("alpha", plan="pro")  # a change, not a second account
        assert lim.store.account_ids() == sorted(names)
