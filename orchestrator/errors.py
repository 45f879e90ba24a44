"""The error tree. Each class carries the spec's machine ``code``; web/errors.py alone maps classes to HTTP.

::

    OrchestratorError
     ├── ConfigError                   start-up refused (never reaches HTTP)
     ├── ValidationFailed              400 VALIDATION_ERROR, details.fields
     ├── Unauthorized                  401 UNAUTHORIZED / INVALID_API_KEY / WEBHOOK_SIGNATURE_INVALID
     ├── Forbidden                     403 INSUFFICIENT_SCOPE / OPERATION_NOT_ALLOWED
     ├── NotFound                      404 *_NOT_FOUND
     ├── Conflict                      409 state, idempotency and duplicate conflicts
     │    └── InvalidStateTransition   409 INVALID_STATE_TRANSITION with the allowed states
     ├── BusinessRuleViolation         422 INSUFFICIENT_FUNDS, PROVIDER_NOT_ENABLED, …
     ├── RateLimited                   429 RATE_LIMITED
     ├── Unavailable                   503 MAINTENANCE_MODE / PROVIDER_UNAVAILABLE / SERVICE_UNAVAILABLE
     └── ProviderFailure               502 PROVIDER_ERROR / STELLAR_NETWORK_ERROR, 504 PROVIDER_TIMEOUT

Errors raised inside an actor are stored on the command row as ``{code, message, details}`` and rebuilt
in the web tier with ``from_dict``, so one error reaches the caller with the same code and status
whichever process detected it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class OrchestratorError(Exception):
    """Base of every error the orchestrator raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "An internal error occurred"

    def __init__(self, message: str | None = None, *, code: str | None = None,
                 details: Mapping[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        if code is not None:
            self.code = code  # type: ignore[misc]  # families share a class, not a code
        self.details: dict[str, Any] = dict(details or {})
        super().__init__(self.message)

    def as_dict(self) -> dict[str, Any]:
        """The JSON-safe form stored on a failed command and rendered in the error envelope."""
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(OrchestratorError):
    """Raised when the environment describes a configuration that cannot work."""

    code = "CONFIG_ERROR"

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid configuration:\n  - " + "\n  - ".join(self.problems))


class InternalError(OrchestratorError):
    """Raised (or rebuilt) for failures that are bugs; the caller sees a generic message."""


class ValidationFailed(OrchestratorError):
    """Raised when a request fails validation; ``details.fields`` lists every failing field."""

    code = "VALIDATION_ERROR"
    default_message = "Request validation failed"

    @classmethod
    def field(cls, field: str, code: str, message: str, **extra: Any) -> ValidationFailed:
        """One failing field, the common case for checks made after the schema."""
        return cls(details={"fields": [{"field": field, "code": code, "message": message, **extra}]})


class Unauthorized(OrchestratorError):
    """Raised when no valid credential (or webhook signature) accompanies a request."""

    code = "UNAUTHORIZED"
    default_message = "Authentication required: send Authorization: Bearer <api key>"


class Forbidden(OrchestratorError):
    """Raised when the credential is valid but may not do this."""

    code = "INSUFFICIENT_SCOPE"
    default_message = "The credential lacks the required scope"


class NotFound(OrchestratorError):
    """Raised when a resource (or route) does not exist; the code names the resource."""

    code = "NOT_FOUND"
    default_message = "Resource not found"


class Conflict(OrchestratorError):
    """Raised when the request conflicts with the current state or an earlier request."""

    code = "CONFLICT"
    default_message = "The request conflicts with the current state"


class InvalidStateTransition(Conflict):
    """Raised when an action is not allowed from the resource's current state."""

    code = "INVALID_STATE_TRANSITION"

    def __init__(self, *, resource: str, id: str, current: str, action: str,
                 allowed: Iterable[str], code: str | None = None, details: Mapping[str, Any] | None = None) -> None:
        allowed_states = sorted(allowed)
        super().__init__(
            f"Cannot {action} {resource} {id} in state {current}", code=code,
            details={"resource": resource, "id": id, "currentState": current,
                     "attemptedAction": action, "allowedStates": allowed_states, **(details or {})})


class BusinessRuleViolation(OrchestratorError):
    """Raised when a well-formed request is refused by a business rule (funds, linkage, destination)."""

    code = "BUSINESS_RULE_VIOLATION"


class InsufficientFunds(BusinessRuleViolation):
    """Raised when a balance is below the amount a move needs."""

    code = "INSUFFICIENT_FUNDS"
    default_message = "User available balance is less than the requested amount"


class RateLimited(OrchestratorError):
    """Raised when a caller exceeds its request or stream budget."""

    code = "RATE_LIMITED"
    default_message = "Too many requests"


class Unavailable(OrchestratorError):
    """Raised when the service refuses work for now (maintenance, provider down)."""

    code = "PROVIDER_UNAVAILABLE"
    default_message = "Service temporarily unavailable"


class ProviderFailure(OrchestratorError):
    """Raised when an outside service answered with an error or not at all."""

    code = "PROVIDER_ERROR"
    default_message = "The provider returned an error"


#: Codes whose family is not the class that declares them: how a stored error finds its class again.
_FAMILIES: dict[str, type[OrchestratorError]] = {}
for _family, _codes in {
    Unauthorized: ("INVALID_API_KEY", "WEBHOOK_SIGNATURE_INVALID"),
    Forbidden: ("OPERATION_NOT_ALLOWED",),
    NotFound: ("USER_NOT_FOUND", "API_KEY_NOT_FOUND", "ORDER_NOT_FOUND", "DISPUTE_NOT_FOUND",
               "TOPUP_NOT_FOUND", "WITHDRAWAL_NOT_FOUND", "WALLET_NOT_FOUND", "MILESTONE_NOT_FOUND",
               "RESERVE_NOT_FOUND", "WEBHOOK_ENDPOINT_NOT_FOUND"),
    Conflict: ("IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_PROGRESS", "BALANCE_CONCURRENCY_CONFLICT",
               "FUNDS_ALREADY_RESERVED", "CLIENT_ORDER_REF_CONFLICT", "ESCROW_ALREADY_EXISTS",
               "ESCROW_NOT_READY", "ESCROW_ALREADY_FUNDED", "DISPUTE_ALREADY_OPEN",
               "WITHDRAWAL_NOT_COMMITTABLE", "AIRTM_USER_ALREADY_LINKED", "BALANCE_DISCREPANCY"),
    BusinessRuleViolation: ("PROVIDER_NOT_ENABLED", "RESERVE_MISMATCH_AMOUNT", "ESCROW_INSUFFICIENT_FUNDS",
                            "ESCROW_FUNDING_FAILED", "WITHDRAWAL_DESTINATION_INVALID",
                            "AIRTM_USER_NOT_LINKED", "AIRTM_USER_INVALID", "WEBHOOK_ENDPOINT_LIMIT",
                            "TREASURY_INSUFFICIENT_FUNDS"),  # decision 25: the pool cannot cover an escrow
    ValidationFailed: ("WEBHOOK_URL_NOT_ALLOWED",),
    Unavailable: ("MAINTENANCE_MODE", "SERVICE_UNAVAILABLE"),
    ProviderFailure: ("STELLAR_NETWORK_ERROR", "PROVIDER_TIMEOUT", "PROVIDER_RATE_LIMITED"),
}.items():
    _FAMILIES.update(dict.fromkeys(_codes, _family))


def _declared(cls: type[OrchestratorError]) -> Iterable[type[OrchestratorError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _declared(sub)


def from_dict(stored: Mapping[str, Any]) -> OrchestratorError:
    """Rebuild an error stored on a command row; an unknown code becomes an ``InternalError``."""
    code = str(stored.get("code", "INTERNAL_ERROR"))
    by_code = {cls.code: cls for cls in _declared(OrchestratorError)}
    cls = by_code.get(code) or _FAMILIES.get(code) or InternalError
    error = OrchestratorError.__new__(cls)
    OrchestratorError.__init__(error, str(stored.get("message") or ""), code=code,
                               details=stored.get("details") or {})
    return error
