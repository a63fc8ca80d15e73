"""Reservation ids: random, and carrying what commit/release need before any lookup."""

from __future__ import annotations

import base64
import binascii
import secrets

from allowance.errors import ReservationNotFound


def new_reservation_id(account: str, expires_at: float) -> str:
    """Random, carrying its account (so commit/release find it in one step) and its expiry (so
    a commit long after expiry says "expired" even once the record has been cleaned up)."""
    tag = base64.urlsafe_b64encode(account.encode()).decode().rstrip("=")
    return f"r{secrets.token_hex(10)}.{int(expires_at * 1000):x}.{tag}"


DEGRADED_PREFIX = "d"


def new_degraded_reservation_id() -> str:
    """The id of a reservation granted without the store (``on_store_error: allow``): it holds
    nothing in any store (its units were journaled as used when it was granted; committing or
    releasing it settles that journal entry: ``StoreGuard.settle``)."""
    return f"{DEGRADED_PREFIX}{secrets.token_hex(10)}"


def is_degraded(reservation_id: object) -> bool:
    return (
        isinstance(reservation_id, str)
        and len(reservation_id) == 21
        and reservation_id.startswith(DEGRADED_PREFIX)
        and all(c in "0123456789abcdef" for c in reservation_id[1:])
    )


def _parts(reservation_id: object) -> tuple[str, float] | None:
    if not isinstance(reservation_id, str) or not reservation_id.startswith("r"):
        return None
    pieces = reservation_id.split(".")
    if len(pieces) != 3:
        return None
    try:
        expires = int(pieces[1], 16) / 1000
        tag = pieces[2]
        account = base64.urlsafe_b64decode(tag + "=" * (-len(tag) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return account, expires


def reservation_account(reservation_id: object) -> str:
    """The account inside a reservation id; ``ReservationNotFound`` for anything else."""
    parts = _parts(reservation_id)
    if parts is None:
        raise ReservationNotFound(f"reservation: no reservation {reservation_id!r}")
    return parts[0]


def reservation_expiry(reservation_id: str) -> float | None:
    """When the reservation named by this id expires (None: not one of our ids)."""
    parts = _parts(reservation_id)
    return None if parts is None else parts[1]
