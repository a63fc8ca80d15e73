"""API keys of the HTTP service: random secrets shown once, stored only as a SHA-256 digest.

A key is 256 random bits, so a fast hash is enough: nothing short of the key itself yields its
digest, and there is no password to stretch. Each key has one scope; scopes nest, so a key
may do what its scope and every scope below it may:

- ``read``: the policy, accounts and their usage;
- ``decide``: read, plus consume, check and reservations (what an app server needs);
- ``admin``: everything, including creating accounts and keys.

A key may also be bound to accounts (``accounts``: ids, or prefixes ending in ``*``): it then
acts only for those, and any other account is unknown to it (``http/bound.py``), so a product
can hand a short-lived read key for one account to the browser of that account's user.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from typing import Any, Literal

from allowance.errors import InvalidRequest
from allowance.types import iso, to_datetime

Scope = Literal["read", "decide", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "decide", "admin")  # each includes the ones before it
KEY_PREFIX = "alw_"
BOOTSTRAP_ID = "key_bootstrap"
MAX_NAME = 200
MAX_BOUND = 100  # account ids or prefixes one key may be bound to
MAX_ACCOUNT = 200  # as an account id (validation.text)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def allows(scope: str, needed: Scope) -> bool:
    return scope in SCOPES and SCOPES.index(scope) >= SCOPES.index(needed)


def check_scope(value: object) -> Scope:
    if value not in SCOPES:
        raise InvalidRequest("scope", value, "expected one of " + ", ".join(SCOPES))
    return value


def check_name(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidRequest("name", value, f"expected printable text of at most {MAX_NAME}")
    return value


def check_accounts(value: object) -> tuple[str, ...] | None:
    """None (every account), or 1 to ``MAX_BOUND`` account ids, each possibly a prefix that
    ends in ``*`` (``team-*``); ``*`` alone would be every account: leave it out instead."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= MAX_BOUND:
        raise InvalidRequest(
            "accounts", value, f"expected a list of 1 to {MAX_BOUND} account ids or prefixes"
        )
    for item in value:
        stem = item[:-1] if isinstance(item, str) and item.endswith("*") else item
        if (
            not isinstance(stem, str)
            or not stem
            or len(stem) > MAX_ACCOUNT
            or not stem.isprintable()
            or "*" in stem
        ):
            raise InvalidRequest(
                "accounts",
                item,
                "expected an account id, or a prefix ending in * (such as team-*); "
                "leave accounts out for every account",
            )
    return tuple(dict.fromkeys(value))


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the store keeps of a key: never the secret, only its digest."""

    id: str
    digest: str
    scope: Scope
    name: str
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None
    accounts: tuple[str, ...] | None = None  # None: every account; see check_accounts

    def matches(self, presented_digest: str) -> bool:
        return hmac.compare_digest(self.digest, presented_digest)

    def acts_for(self, account: str) -> bool:
        """Whether this key may act for ``account`` (an id, or under a prefix it names)."""
        if self.accounts is None:
            return True
        return any(
            account.startswith(a[:-1]) if a.endswith("*") else account == a for a in self.accounts
        )

    def to_json(self) -> dict[str, Any]:
        """The public view (no digest)."""
        return {
            "id": self.id,
            "scope": self.scope,
            "name": self.name,
            "created_at": iso(to_datetime(self.created_at)),
            "last_used_at": iso(to_datetime(self.last_used_at)),
            "revoked_at": iso(to_datetime(self.revoked_at)),
            "accounts": None if self.accounts is None else list(self.accounts),
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "digest": self.digest,
            "scope": self.scope,
            "name": self.name,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "accounts": None if self.accounts is None else list(self.accounts),
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> ApiKey:
        return cls(
            id=data["id"],
            digest=data["digest"],
            scope=data["scope"],
            name=data["name"],
            created_at=float(data["created_at"]),
            last_used_at=data.get("last_used_at"),
            revoked_at=data.get("revoked_at"),
            accounts=None if data.get("accounts") is None else tuple(data["accounts"]),
        )

    def with_use(self, now: float) -> ApiKey:
        return replace(self, last_used_at=now)


def new_key(scope: object, name: object, now: float, accounts: object = None) -> tuple[ApiKey, str]:
    """A fresh key: the record to store and the secret to show once."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        id="key_" + secrets.token_hex(8),
        digest=digest(secret),
        scope=check_scope(scope),
        name=check_name(name),
        created_at=now,
        accounts=check_accounts(accounts),
    )
    return record, secret


def bootstrap_key(secret: str, now: float) -> ApiKey:
    """The admin key named by ``ALLOWANCE_BOOTSTRAP_KEY``: a fixed id, so a new value replaces
    the old one instead of piling up keys."""
    if len(secret) < 16:
        raise InvalidRequest(
            "ALLOWANCE_BOOTSTRAP_KEY", "…", "must be at least 16 characters (use a random value)"
        )
    return ApiKey(BOOTSTRAP_ID, digest(secret), "admin", "bootstrap", now)
