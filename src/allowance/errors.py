"""The one error tree of allowance. Every error a caller can see is an ``AllowanceError``.

AllowanceError
├── InvalidRequest            a bad argument; ``field`` names it, ``value`` holds it
│   ├── InvalidAmount
│   ├── UnknownFeature
│   └── UnknownPlan
├── UnknownAccount            no account with that id in the store
├── IdempotencyConflict       a key re-used with another feature, amount or operation
├── ReservationNotFound       no reservation with that id (or it is already gone)
├── ReservationExpired        commit after the reservation's expiry
├── LimitExceeded             commit(amount) of more than the windows have room for; ``decision``
├── PolicyError               a policy file or object is invalid; ``issues`` lists each
├── ConfigurationError        a bad store URL or option (or service URL, for ``Client``)
├── AuthenticationError       ``Client``: the service refused the key (401)
├── PermissionDenied          ``Client``: the key's scope is too small for the call (403)
└── StoreError                the store failed (chained ``from`` the driver's error)
    └── StoreUnavailable      not reached in time: down, hung past the timeout, breaker open
        └── ServiceUnavailable  ``Client``: the service did not answer, or answered 5xx
"""

from __future__ import annotations

from dataclasses import dataclass

from allowance.types import Decision


class AllowanceError(Exception):
    """Base of every error raised by allowance."""


class InvalidRequest(AllowanceError, ValueError):
    """An argument is invalid. Nothing was read or charged."""

    def __init__(self, field: str, value: object, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"{field}: {problem} (got {value!r})")


class InvalidAmount(InvalidRequest):
    """``amount`` is not an integer in 1..1,000,000."""


class UnknownFeature(InvalidRequest):
    """The feature is not in the policy."""


class UnknownPlan(InvalidRequest):
    """The plan is not in the policy."""


class UnknownAccount(AllowanceError, LookupError):
    """No account with that id exists in the store."""

    def __init__(self, account: str) -> None:
        self.account = account
        super().__init__(f"account: no account {account!r}; create it first")


class IdempotencyConflict(AllowanceError):
    """An idempotency key was re-used within 24 h for a different request."""


class ReservationNotFound(AllowanceError, LookupError):
    """No reservation with that id is held (never existed, or already settled and swept)."""


class ReservationExpired(AllowanceError):
    """The reservation expired before ``commit()``; its units went back to their windows."""


class LimitExceeded(AllowanceError):
    """``commit(amount)`` asked for more units than were held, and the extra does not fit now:
    nothing changed, the reservation is still held. ``decision`` is the extra's denial (its
    limit, reset and upgrade)."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(decision.message)


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file: where (``line``, dotted ``path``) and what."""

    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.path or '(top)'}: {self.message}"


class PolicyError(AllowanceError):
    """A policy is invalid. ``issues`` holds every problem found, each with its line."""

    def __init__(self, issues: list[PolicyIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        head = f"invalid policy {source}" if source else "invalid policy"
        body = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{head}:\n{body}")


class ConfigurationError(AllowanceError):
    """A store URL or option is wrong (unknown scheme, bad parameter)."""


class NotSupported(AllowanceError):
    """What this store cannot do (yet): the message says which stores can."""


class StoreError(AllowanceError):
    """The store failed; the driver's own error is chained as ``__cause__``."""


class StoreUnavailable(StoreError):
    """The store could not be reached in time: it is down, it did not answer within the
    timeout, or its circuit breaker is open. ``retry_after``: seconds until a retry may
    succeed. ``maybe_applied``: whether the request may have reached the store and been
    applied before its reply was lost (False only when it was certainly never sent)."""

    def __init__(
        self, message: str, *, retry_after: float = 1.0, maybe_applied: bool = True
    ) -> None:
        self.retry_after = retry_after
        self.maybe_applied = maybe_applied
        super().__init__(message)


class AuthenticationError(AllowanceError):
    """The service refused the key: missing, unknown or revoked (HTTP 401)."""


class PermissionDenied(AllowanceError):
    """The key is valid but its scope does not allow the call (HTTP 403), e.g. a ``read``
    key asking for a decision."""


class ServiceUnavailable(StoreUnavailable):
    """``Client``: the service could not be reached, timed out, or answered 5xx (its store
    failed), after any retries. A ``StoreUnavailable``, so code that handles a failing store around
    ``Limiter`` (fail open or closed) handles a failing service the same way. The httpx
    error, when there was one, is chained as ``__cause__``."""
