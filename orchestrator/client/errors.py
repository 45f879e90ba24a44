"""One exception class per error family of errors.md, built from the error envelope (cli-sdk.md §1.5).

Callers branch on the class (or on ``code``); every instance carries the server's ``code``, ``message``,
``status_code``, ``details`` and the ``request_id`` of the ``X-Request-ID`` header, so a support ticket can
quote the request that failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict


class OfferHubError(Exception):
    """Any error the orchestrator answered (or, for ``NetworkError``, the transport failing to reach it)."""

    def __init__(self, message: str, *, code: str = "UNKNOWN_ERROR", status_code: int = 0,
                 details: dict[str, Any] | None = None, request_id: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.details = details or {}
        self.request_id = request_id
        self.headers: CIMultiDict[str] = CIMultiDict(headers or {})

    def __str__(self) -> str:
        where = f" (request {self.request_id})" if self.request_id else ""
        return f"{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status_code={self.status_code}, message={self.message!r})"


class NetworkError(OfferHubError):
    """The server could not be reached or did not answer in time (no HTTP status)."""

    def __init__(self, message: str, *, original: BaseException | None = None) -> None:
        super().__init__(message, code="NETWORK_ERROR", status_code=0)
        self.original = original


class AuthenticationError(OfferHubError):
    """401: no credential, or one the server does not accept (UNAUTHORIZED, INVALID_API_KEY)."""


class AuthorizationError(OfferHubError):
    """403: the credential lacks a scope (INSUFFICIENT_SCOPE) or the operation is disabled."""

    @property
    def required_scope(self) -> str | None:
        return self.details.get("requiredScope")

    @property
    def current_scopes(self) -> list[str]:
        return list(self.details.get("currentScopes") or [])


class NotFoundError(OfferHubError):
    """404: an unknown resource (``*_NOT_FOUND``) or route."""


class ValidationError(OfferHubError):
    """400: the request failed validation; ``fields`` lists every failing field."""

    @property
    def fields(self) -> list[dict[str, Any]]:
        return list(self.details.get("fields") or [])


class ConflictError(OfferHubError):
    """409 that is not one of the more specific families below (e.g. ESCROW_ALREADY_EXISTS)."""


class InvalidStateTransitionError(ConflictError):
    """409 INVALID_STATE_TRANSITION (and its relatives): the action is not allowed in the current state."""

    @property
    def current_state(self) -> str | None:
        return self.details.get("currentState")


class IdempotencyError(ConflictError):
    """409 IDEMPOTENCY_KEY_REUSED / IDEMPOTENCY_KEY_IN_PROGRESS (IDEMPOTENCY_CONFLICT is read as REUSED)."""


class InsufficientFundsError(OfferHubError):
    """422 INSUFFICIENT_FUNDS / ESCROW_INSUFFICIENT_FUNDS: the balance is below the amount."""


class BusinessRuleError(OfferHubError):
    """422 other than insufficient funds: a business rule refused the request."""


class RateLimitError(OfferHubError):
    """429: wait ``retry_after`` seconds."""

    @property
    def retry_after(self) -> float | None:
        return retry_after(self.headers, self.details)


class ProviderError(OfferHubError):
    """502/504 and provider codes: AirTM, Trustless Work or the ledger failed or timed out."""


class ServiceUnavailableError(OfferHubError):
    """503: maintenance mode, a provider unavailable, or the server's own database unreachable
    (``SERVICE_UNAVAILABLE``, retried by the client like every 503)."""


class MaintenanceError(ServiceUnavailableError):
    """503 MAINTENANCE_MODE: writes are refused until maintenance ends."""


class ServerError(OfferHubError):
    """500 INTERNAL_ERROR: a bug in the server; quote ``request_id`` when reporting it."""


_BY_CODE: dict[str, type[OfferHubError]] = {
    "INSUFFICIENT_FUNDS": InsufficientFundsError,
    "ESCROW_INSUFFICIENT_FUNDS": InsufficientFundsError,
    "TREASURY_INSUFFICIENT_FUNDS": InsufficientFundsError,
    "INVALID_STATE_TRANSITION": InvalidStateTransitionError,
    "INVALID_STATE": InvalidStateTransitionError,
    "FUNDS_ALREADY_RESERVED": InvalidStateTransitionError,
    "WITHDRAWAL_NOT_COMMITTABLE": InvalidStateTransitionError,
    "IDEMPOTENCY_KEY_REUSED": IdempotencyError,
    "IDEMPOTENCY_KEY_IN_PROGRESS": IdempotencyError,
    "IDEMPOTENCY_CONFLICT": IdempotencyError,
    "MAINTENANCE_MODE": MaintenanceError,
    "SERVICE_UNAVAILABLE": ServiceUnavailableError,
    "PROVIDER_ERROR": ProviderError,
    "PROVIDER_TIMEOUT": ProviderError,
    "PROVIDER_RATE_LIMITED": ProviderError,
    "PROVIDER_UNAVAILABLE": ProviderError,
    "STELLAR_NETWORK_ERROR": ProviderError,
}

_BY_STATUS: dict[int, type[OfferHubError]] = {
    400: ValidationError, 401: AuthenticationError, 403: AuthorizationError, 404: NotFoundError,
    409: ConflictError, 422: BusinessRuleError, 429: RateLimitError, 500: ServerError, 502: ProviderError,
    503: ServiceUnavailableError, 504: ProviderError,
}

#: Names the seeds' guide uses for a code the server emits under another name.
_ALIASES = {"IDEMPOTENCY_CONFLICT": "IDEMPOTENCY_KEY_REUSED", "INVALID_STATE": "INVALID_STATE_TRANSITION"}


def from_response(status: int, body: Any, headers: Mapping[str, str]) -> OfferHubError:
    """The exception for an error answer: by code first (a code is more precise), then by status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": f"HTTP_{status}", "message": str(body)[:500] if body else f"HTTP {status}"}
    code = _ALIASES.get(str(error.get("code")), str(error.get("code")))
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else OfferHubError)
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return cls(str(error.get("message") or f"HTTP {status}"), code=code, status_code=status, details=details,
               request_id=headers.get("X-Request-ID"), headers=headers)


def retry_after(headers: Mapping[str, str], details: dict[str, Any] | None = None) -> float | None:
    """Seconds from ``Retry-After`` (or ``details.retryAfter``); ``None`` when neither is usable."""
    for value in (headers.get("Retry-After"), (details or {}).get("retryAfter")):
        try:
            if value is not None:
                return max(0.0, float(value))  # not money
        except (TypeError, ValueError):
            continue
    return None
