"""``allowance keys create|list|revoke`` against an SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allowance.keys import digest
from allowance.stores import store_from_url

from .support import Run


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'allowance.db'}"


def test_create_list_revoke(run: Run, store: str) -> None:
    made = run("keys", "create", "--scope", "decide", "--name", "web", "--store", store, "--json")
    assert made.exit_code == 0
    created = json.loads(made.stdout)
    assert created["key"].startswith("alw_") and created["scope"] == "decide"
    listed = json.loads(run("keys", "list", "--store", store, "--json").stdout)
    assert [(k["id"], k["name"], k["revoked_at"]) for k in listed] == [(created["id"], "web", None)]
    assert created["key"] not in run("keys", "list", "--store", store).stdout
    s = store_from_url(store)
    try:  # only the digest is stored
        found = s.keyring().find(digest(created["key"]))
        assert found is not None and found.id == created["id"]
    finally:
        s.close()
    revoked = run("keys", "revoke", created["id"], "--store", store)
    assert (revoked.exit_code, revoked.stdout) == (0, f"revoked {created['id']}\n")
    listed = json.loads(run("keys", "list", "--store", store, "--json").stdout)
    assert listed[0]["revoked_at"] is not None


def test_plain_create_prints_the_key_once(run: Run, store: str) -> None:
    made = run("keys", "create", "--scope", "read", "--store", store)
    assert made.exit_code == 0 and made.stdout.startswith("alw_")
    assert "shown once" in made.stdout


def test_mistakes(run: Run, store: str) -> None:
    bad = run("keys", "create", "--scope", "owner", "--store", store)
    assert bad.exit_code == 1 and "scope: expected one of read, decide, admin" in bad.stderr
    gone = run("keys", "revoke", "key_nope", "--store", store)
    assert gone.exit_code == 1 and "no key 'key_nope'" in gone.stderr
    assert json.loads(run("keys", "list", "--store", store, "--json").stdout) == []


def test_a_key_bound_to_accounts(run: Run, store: str) -> None:
    made = run(
        "keys", "create", "--scope", "read", "--account", "acme", "--account", "team-*",
        "--store", store,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "for acme, team-* only" in made.stdout
    secret = made.stdout.splitlines()[0]
    s = store_from_url(store)
    try:
        found = s.keyring().find(digest(secret))
        assert found is not None and found.accounts == ("acme", "team-*")
    finally:
        s.close()
    listed = run("keys", "list", "--store", store).stdout
    assert "acme, team-*" in listed
    assert json.loads(run("keys", "list", "--store", store, "--json").stdout)[0]["accounts"] == [
        "acme",
        "team-*",
    ]
    bad = run("keys", "create", "--scope", "read", "--account", "a*b", "--store", store)
    assert bad.exit_code == 1 and bad.stderr.startswith("error: accounts: "), bad.stderr
    assert len(json.loads(run("keys", "list", "--store", store, "--json").stdout)) == 1


def test_serve_refuses_a_bad_policy_before_listening(run: Run, tmp_path: Path) -> None:
    from .support import POLICIES

    bad = run("serve", "--policy", str(POLICIES / "negative_max.yaml"), "--port", "0")
    assert bad.exit_code == 1 and "negative_max.yaml:" in bad.stderr
