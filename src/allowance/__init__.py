"""allowance: plan-based usage limits for expensive features.

The public surface is what ``__all__`` lists; other modules are importable but not promised.
"""

from allowance.aio import AsyncLimiter, AsyncReservation
from allowance.client import AsyncClient, Client
from allowance.clock import Clock, ManualClock
from allowance.errors import (
    AllowanceError,
    AuthenticationError,
    ConfigurationError,
    IdempotencyConflict,
    InvalidAmount,
    InvalidRequest,
    LimitExceeded,
    NotSupported,
    PermissionDenied,
    PolicyError,
    PolicyIssue,
    ReservationExpired,
    ReservationNotFound,
    ServiceUnavailable,
    StoreError,
    StoreUnavailable,
    UnknownAccount,
    UnknownFeature,
    UnknownPlan,
)
from allowance.events import Event
from allowance.ledger import LedgerPage, Row, acting_as
from allowance.limiter import Limiter, Reservation
from allowance.listing import AccountPage
from allowance.policy import Policy, builtin_policy, load_policy, parse_policy
from allowance.types import Account, Decision, Meter

__version__ = "0.1.0"

__all__ = [
    "Account",
    "AccountPage",
    "AllowanceError",
    "AsyncClient",
    "AsyncLimiter",
    "AsyncReservation",
    "AuthenticationError",
    "Client",
    "Clock",
    "ConfigurationError",
    "Decision",
    "Event",
    "IdempotencyConflict",
    "InvalidAmount",
    "InvalidRequest",
    "LedgerPage",
    "LimitExceeded",
    "Limiter",
    "ManualClock",
    "Meter",
    "NotSupported",
    "PermissionDenied",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Reservation",
    "ReservationExpired",
    "ReservationNotFound",
    "Row",
    "ServiceUnavailable",
    "StoreError",
    "StoreUnavailable",
    "UnknownAccount",
    "UnknownFeature",
    "UnknownPlan",
    "__version__",
    "acting_as",
    "builtin_policy",
    "load_policy",
    "parse_policy",
]
