"""Where a limit's counter is kept for one request: its scope (``Limit.scope``) and the
request's user say whose record holds it.

- ``account``: the account's own record, with its plan (``AccountView.counters``);
- ``user``: a record per (account, user), owner ``u:<user>``;
- ``user_global``: a record per user across every account, owner ``g:<user>``.

A decision reads the counters of every scope it touches inside the same atomic step as the
account, so the engine sees one mapping by limit name and never knows where each came from.
A user's records are apart from the account's so that a space of a thousand users costs a
decision what it costs with one: the account's record does not grow with its users.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence

from allowance.policy import Limit, Policy
from allowance.state import Counter
from allowance.view import AccountView

__all__ = [
    "GLOBAL",
    "USER",
    "counters",
    "merged",
    "needed",
    "owner_of",
    "record_key",
    "record_scopes",
    "records_of",
    "save",
]

USER = "u:"
GLOBAL = "g:"
_PREFIX = {"user": USER, "user_global": GLOBAL}
SEP = "\x1f"  # ids are printable (validation.text): this cannot occur in one
# the owner prefixes of the records a feature's requests read (None: any feature), by policy
_prefixes: weakref.WeakKeyDictionary[Policy, dict[str | None, tuple[str, ...]]] = (
    weakref.WeakKeyDictionary()
)


def owner_of(scope: str, user: str | None) -> str | None:
    """The owner of a counter of this scope for ``user`` (None: the account). Without a user
    (which ``validation.request`` refuses for such a limit, but a reservation made before its
    limit counted per user has none) the counter is the account's."""
    prefix = _PREFIX.get(scope)
    return None if prefix is None or user is None else prefix + user


def record_scopes(limits: Iterable[Limit]) -> tuple[str, ...]:
    """The scopes other than the account's that ``limits`` count in, in the order their
    records are read (``needed``): the same for every user."""
    return tuple(
        sorted({lim.scope for lim in limits if lim.scope in _PREFIX}, key=_PREFIX.__getitem__)
    )


def records_of(limits: Sequence[Limit]) -> tuple[int, ...]:
    """For each limit, which record of a request holds its counter: 0 the account's, k the
    k-th of ``needed`` (the one-step kernels read ``rules.Encoded.records``)."""
    scopes = record_scopes(limits)
    return tuple(0 if lim.scope not in _PREFIX else 1 + scopes.index(lim.scope) for lim in limits)


def needed(policy: Policy, feature: str | None, user: str | None) -> tuple[str, ...]:
    """The records a request by ``user`` for ``feature`` reads (None: any feature, as the
    meters read them), in a fixed order."""
    if user is None:
        return ()
    prefixes = _prefixes.get(policy)
    if prefixes is None:
        prefixes = _prefixes.setdefault(policy, {})
    found = prefixes.get(feature)
    if found is None:  # once per policy and feature: every decision by a user asks
        limits = policy.limits.values() if feature is None else policy.limits_of(feature)
        found = prefixes[feature] = tuple(_PREFIX[s] for s in record_scopes(limits))
    return tuple(prefix + user for prefix in found)


def merged(
    names: Sequence[str], records: Sequence[int], stored: Sequence[dict[str, Counter]]
) -> dict[str, Counter]:
    """The counters a one-step kernel decided on, by limit name: limit ``names[i]``'s from
    record ``records[i]`` of ``stored`` (the account's first, then those of ``needed``)."""
    out = {}
    for name, record in zip(names, records, strict=True):
        counter = stored[record].get(name)
        if counter is not None:
            out[name] = counter
    return out


def record_key(account: str, owner: str) -> str:
    """One text naming an owner's record in a store: (account, user) for ``u:``, the user
    alone for ``g:`` (an account id is never empty)."""
    if owner.startswith(USER):
        return account + SEP + owner[len(USER) :]
    return SEP + owner[len(GLOBAL) :]


def counters(
    policy: Policy, view: AccountView, names: Iterable[str], user: str | None
) -> dict[str, Counter]:
    """The counters of these limits for a request by ``user``, by limit name (blank ones
    where none is stored yet). A limit the policy no longer has is the account's."""
    if user is None:  # every counter is the account's: the common case costs no lookups
        return view.counters(names)
    own: list[str] = []
    out: dict[str, Counter] = {}
    for name in names:
        owner = _owner(policy, name, user)
        if owner is None:
            own.append(name)
            continue
        record = view.owned(owner)
        counter = record.get(name)
        if counter is None:
            counter = record[name] = Counter()
        out[name] = counter
    if own:
        out.update(view.counters(own))
    return out


def save(policy: Policy, view: AccountView, changed: dict[str, Counter], user: str | None) -> None:
    """Persist counters from ``counters`` after the engine changed them."""
    if user is None:
        view.save_counters(changed)
        return
    own: dict[str, Counter] = {}
    owners: set[str] = set()
    for name, counter in changed.items():
        owner = _owner(policy, name, user)
        if owner is None:
            own[name] = counter
        else:
            owners.add(owner)
    for owner in sorted(owners):
        view.save_owned(owner)
    if own or not owners:
        view.save_counters(own)


def _owner(policy: Policy, name: str, user: str | None) -> str | None:
    """Whose record holds limit ``name``'s counter for ``user`` (a limit the policy no longer
    has: the account's)."""
    limit = policy.limits.get(name)
    return None if limit is None else owner_of(limit.scope, user)
