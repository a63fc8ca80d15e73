"""One store decides for several policies in turn (a policy reloaded, two apps in a process):
each decision follows its own policy. The one-step kernels' compiled rules used to be cached
by ``id(policy)``, so a new policy at a dead one's address got the dead one's caps; and Redis
remembered per feature name whether to send period bounds, so the same feature with a
calendar limit in a second policy sent none."""

from __future__ import annotations

import gc

from allowance import Limiter, ManualClock, parse_policy
from allowance.stores import store_from_url


def policy_text(cap: int, window: str) -> str:
    return f"""\
version: 1
plans: [basic]
features:
  doc.make: {{title: Make}}
limits:
  made:
    features: [doc.make]
    window: {window}
    plans: {{basic: {cap}}}
"""


ROLLING = "{type: anchored, length: 1h}"
CALENDAR = "{type: calendar, unit: day}"


def test_each_policy_decides_by_its_own_rules(store_url: str, clock: ManualClock) -> None:
    store = store_from_url(store_url)
    try:
        for round_ in range(12):
            cap = 3 + round_ % 3
            window = CALENDAR if round_ % 2 else ROLLING
            policy = parse_policy(policy_text(cap, window), f"policy {round_}")
            lim = Limiter(policy, store=store, clock=clock)
            account = f"a{round_}"
            lim.set_account(account, plan="basic")
            granted = lim.consume(account, "doc.make", 10, partial=True).granted
            assert granted == cap, (round_, window)
            denied = lim.check(account, "doc.make")
            assert not denied.allowed and denied.limit == "made"
            if window == CALENDAR:
                assert denied.resets_at is not None and denied.resets_at.hour == 0
            del lim, policy
            gc.collect()  # the next policy may take the dead one's address
    finally:
        store.close()
