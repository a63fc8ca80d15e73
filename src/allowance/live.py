"""What a Limiter decides with, live: its own policy (given, or re-read on SIGHUP by
``serve``), unless the store holds one (``PUT /v1/policy``, ``Limiter.put_policy``), with the
load factors of the store in force (``load.py``).

Both are settings of the store (``POLICY``, ``load.SETTING``), read at most ``load.REFRESH``
seconds apart inside a decision call (on every call where reading costs nothing: the memory
store), so every server on the store switches within that time, and the Limiter that wrote
them at once. A decision takes one policy object for the whole of it (``Live.policy``,
replaced whole, never changed), so a switch is never half applied. A read that fails for want
of the store fails the decision it was for (within the same timeout); a setting that cannot
be read otherwise leaves what was read last.
"""

from __future__ import annotations

import logging
import math
import time

from allowance import load
from allowance.errors import AllowanceError, StoreUnavailable
from allowance.policy import Policy, parse_policy
from allowance.stores.base import Store

POLICY = "policy"  # the setting holding a policy file's text
log = logging.getLogger("allowance.store")


class Live:
    """The policy one Limiter decides with, and when it read the store's settings."""

    __slots__ = ("base", "factors", "local", "policy", "read_at", "stored", "texts")

    def __init__(self, local: Policy) -> None:
        self.local = local
        self.stored: Policy | None = None  # the store's policy, when it holds one
        self.base = local  # stored or local: what the policy file says
        self.factors = load.Factors()
        self.policy = local  # base with the load factors in force
        self.texts: tuple[str | None, str | None] = (None, None)  # (policy, factors) as read
        self.read_at = -math.inf

    def due(self) -> bool:
        """Whether the settings are to be read again now. The first caller to see them older
        than REFRESH takes the read on: the others go on with these meanwhile (a burst of
        calls reads once), and so does everyone if that read fails."""
        now = time.monotonic()
        if now - self.read_at < load.REFRESH:
            return False
        self.read_at = now
        return True

    def apply(self, policy_text: str | None, factors_text: str | None) -> bool:
        """Decide with these settings as read from now on; True when the base policy
        changed. A stored policy that does not parse (written by another version, say) is
        left aside with a warning."""
        self.read_at = time.monotonic()
        if (policy_text, factors_text) == self.texts:  # nearly always: nothing to work out
            return False
        was = self.base
        if policy_text != self.texts[0]:
            try:
                self.stored = None if policy_text is None else parse_policy(policy_text, POLICY)
            except AllowanceError as exc:
                log.warning("policy: the store's policy is not valid here; kept: %s", exc)
        self.factors = load.parse(factors_text)
        self.texts = (policy_text, factors_text)
        self._rebuild()
        return self.base is not was

    def set_local(self, policy: Policy) -> bool:
        """A new policy of this Limiter's own (a file re-read); the store's still wins."""
        was = self.base
        self.local = policy
        self._rebuild()
        return self.base is not was

    def _rebuild(self) -> None:
        base = self.stored or self.local
        self.base = base
        self.policy = base.scaled({name: self.factors.of(name) for name in base.limits})

    def by_limit(self) -> dict[str, float]:
        """The factor in force for each limit of the policy."""
        return {name: self.factors.of(name) for name in self.base.limits}

    def read(self, store: Store) -> bool:
        """Read both settings from ``store`` and apply them (see ``apply``)."""
        return self.apply(store.get_setting(POLICY), store.get_setting(load.SETTING))

    def refresh(self, store: Store) -> bool:
        """``read`` when due (always where reading costs nothing); ``StoreUnavailable``
        passes; other failures keep what was read last. True when the base changed."""
        if store.settings_local:  # every call: compare what was read, work out nothing new
            policy_text, factors_text = store.get_setting(POLICY), store.get_setting(load.SETTING)
            texts = self.texts
            if policy_text == texts[0] and factors_text == texts[1]:
                return False
            return self.apply(policy_text, factors_text)
        if not self.due():
            return False
        try:
            return self.read(store)
        except StoreUnavailable:
            raise
        except AllowanceError as exc:  # a setting it cannot read: decide as before
            log.warning("settings: kept the ones read last: %s", exc)
            return False
