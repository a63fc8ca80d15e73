"""API-key storage on every store: digests only, revocation sticks, uses recorded."""

from __future__ import annotations

import pytest

from allowance import Limiter
from allowance.keys import BOOTSTRAP_ID, allows, bootstrap_key, digest, new_key


def test_a_new_key_is_found_by_its_digest_only(limiter: Limiter) -> None:
    ring = limiter.store.keyring()
    record, secret = new_key("decide", "app servers", 1_000.0)
    ring.add(record)
    assert secret.startswith("alw_") and len(secret) > 40
    assert secret not in repr(ring.all())  # only the digest is kept
    found = ring.find(digest(secret))
    assert found == record and found.matches(digest(secret))
    assert ring.find(digest(secret + "x")) is None
    assert [k.id for k in ring.all()] == [record.id]


def test_revocation_keeps_its_first_time_and_survives_later_use(limiter: Limiter) -> None:
    ring = limiter.store.keyring()
    a, sa = new_key("read", "", 10.0)
    b, _ = new_key("admin", "ops", 20.0)
    ring.add(b)
    ring.add(a)
    ring.touch(a.id, 30.0)
    assert ring.revoke(a.id, 40.0) is True
    assert ring.revoke(a.id, 50.0) is True  # already revoked: stays at 40
    ring.touch(a.id, 60.0)  # a use racing the revocation cannot undo it
    found = ring.find(digest(sa))
    assert found is not None and found.revoked_at == 40.0 and found.last_used_at == 60.0
    assert ring.revoke("key_unknown", 70.0) is False
    assert [(k.id, k.revoked_at) for k in ring.all()] == [(a.id, 40.0), (b.id, None)]


def test_the_bootstrap_key_is_replaced_not_duplicated(limiter: Limiter) -> None:
    ring = limiter.store.keyring()
    ring.add(bootstrap_key("first-bootstrap-secret", 1.0))
    ring.add(bootstrap_key("second-bootstrap-secret", 2.0))
    assert [k.id for k in ring.all()] == [BOOTSTRAP_ID]
    assert ring.find(digest("first-bootstrap-secret")) is None
    found = ring.find(digest("second-bootstrap-secret"))
    assert found is not None and found.scope == "admin" and found.created_at == 2.0


def test_scopes_nest() -> None:
    assert allows("admin", "decide") and allows("decide", "read") and allows("read", "read")
    assert not allows("read", "decide") and not allows("decide", "admin")
    assert not allows("root", "read")


@pytest.mark.parametrize(
    ("scope", "name", "field"),
    [("owner", "x", "scope"), ("read", 3, "name"), ("read", "a\nb", "name")],
)
def test_bad_key_settings_name_the_field(scope: object, name: object, field: str) -> None:
    from allowance.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        new_key(scope, name, 0.0)
    assert info.value.field == field


def test_bootstrap_is_idempotent_and_never_undoes_a_revocation(limiter: Limiter) -> None:
    ring = limiter.store.keyring()
    assert ring.ensure_bootstrap("bootstrap-secret-value", 1.0) is True
    ring.touch(BOOTSTRAP_ID, 5.0)
    assert ring.ensure_bootstrap("bootstrap-secret-value", 9.0) is True  # a restart
    (key,) = ring.all()
    assert (key.created_at, key.last_used_at) == (1.0, 5.0)  # kept, not replaced
    ring.revoke(BOOTSTRAP_ID, 10.0)
    assert ring.ensure_bootstrap("bootstrap-secret-value", 11.0) is False
    assert ring.all()[0].revoked_at == 10.0
    assert ring.ensure_bootstrap("a-new-bootstrap-value", 12.0) is True  # a new value replaces it
    (key,) = ring.all()
    assert key.revoked_at is None and key.created_at == 12.0


def test_a_key_bound_to_accounts_keeps_them(limiter: Limiter) -> None:
    ring = limiter.store.keyring()
    bound, secret = new_key("read", "browser", 1.0, ["acme", "team-*", "acme"])
    ring.add(bound)
    found = ring.find(digest(secret))
    assert found is not None and found.accounts == ("acme", "team-*")  # once each
    assert [k.accounts for k in ring.all()] == [("acme", "team-*")]
    assert found.acts_for("acme") and found.acts_for("team-42") and found.acts_for("team-")
    assert not found.acts_for("acme2") and not found.acts_for("team") and not found.acts_for("")
    unbound, _ = new_key("read", "", 2.0)
    assert unbound.accounts is None and unbound.acts_for("anything")


@pytest.mark.parametrize(
    "accounts", [[], "acme", ["*"], ["a*b"], ["a**"], [""], [3], ["x" * 201], ["a\nb"]]
)
def test_bad_bindings_name_the_field(accounts: object) -> None:
    from allowance.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as info:
        new_key("read", "", 0.0, accounts)
    assert info.value.field == "accounts"
