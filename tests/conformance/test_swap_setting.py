"""``Store.swap_setting`` on every store: a compare-and-set (what webhooks and their
delivery lease rest on), atomic under racing threads."""

from __future__ import annotations

import threading

from allowance import Limiter


def test_a_setting_changes_only_from_what_was_read(limiter: Limiter) -> None:
    store = limiter.store
    assert store.swap_setting("swap.test", None, "one")
    assert not store.swap_setting("swap.test", None, "two")  # set meanwhile
    assert not store.swap_setting("swap.test", "zero", "two")  # not what it holds
    assert store.get_setting("swap.test") == "one"
    assert store.swap_setting("swap.test", "one", "two")
    assert store.get_setting("swap.test") == "two"


def test_racing_threads_each_win_once(limiter: Limiter) -> None:
    store, rounds, wins = limiter.store, 25, [0] * 8

    def bump(i: int) -> None:
        for _ in range(rounds):
            while True:
                old = store.get_setting("swap.count")
                if store.swap_setting("swap.count", old, str(int(old or "0") + 1)):
                    wins[i] += 1
                    break

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_setting("swap.count") == str(8 * rounds) and sum(wins) == 8 * rounds
