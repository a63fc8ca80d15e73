"""``Reservation``: units held by ``Limiter.reserve`` (or ``Client.reserve``) until settled."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from allowance.errors import ReservationNotFound
from allowance.types import Decision


class Settles(Protocol):
    """What a reservation settles through: ``Limiter`` or ``Client``."""

    def commit(self, reservation_id: str, amount: int | None = None) -> None: ...

    def release(self, reservation_id: str) -> None: ...


class Reservation:
    """Units held by ``reserve``. ``id`` is None when the reservation was denied."""

    __slots__ = ("_limiter", "decision", "expires_at", "id")

    def __init__(
        self, limiter: Settles, id: str | None, decision: Decision, expires_at: datetime | None
    ) -> None:
        self._limiter = limiter
        self.id = id
        self.decision = decision
        self.expires_at = expires_at

    def commit(self, amount: int | None = None) -> None:
        """Make the held units final, or with ``amount`` that many instead (the rest goes
        back; more is charged if it fits, else ``LimitExceeded`` and the units stay held)."""
        if self.id is None:
            raise ReservationNotFound("reservation: a denied reservation holds nothing")
        self._limiter.commit(self.id, amount)

    def release(self) -> None:
        if self.id is not None:
            self._limiter.release(self.id)

    def __repr__(self) -> str:
        return (
            f"Reservation(id={self.id!r}, expires_at={self.expires_at!r}, "
            f"decision={self.decision!r})"
        )
