"""The ONLY table from error classes to HTTP statuses, and the error envelope (spec api.md §1.7)."""

from __future__ import annotations

from typing import Any

import psycopg
from aiohttp import web
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc

from orchestrator.errors import (
    BusinessRuleViolation,
    Conflict,
    Forbidden,
    NotFound,
    OrchestratorError,
    ProviderFailure,
    RateLimited,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from web.responses import json_bytes


class MethodNotAllowed(OrchestratorError):
    """Raised when a known route does not accept the method."""

    code = "METHOD_NOT_ALLOWED"
    default_message = "Method not allowed on this route"


class PayloadTooLarge(OrchestratorError):
    """Raised when a body exceeds 1 MiB."""

    code = "PAYLOAD_TOO_LARGE"
    default_message = "Request body exceeds 1 MiB"


class UnsupportedMediaType(OrchestratorError):
    """Raised when a body is not ``application/json``."""

    code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Request body must be application/json"


#: Most specific first: the first class an error is an instance of gives its status.
STATUS_BY_CLASS: list[tuple[type[OrchestratorError], int]] = [
    (ValidationFailed, 400), (Unauthorized, 401), (Forbidden, 403), (NotFound, 404),
    (MethodNotAllowed, 405), (Conflict, 409), (PayloadTooLarge, 413), (UnsupportedMediaType, 415),
    (BusinessRuleViolation, 422), (RateLimited, 429), (Unavailable, 503), (ProviderFailure, 502),
]
#: Codes whose status differs from their family's.
STATUS_BY_CODE = {"PROVIDER_TIMEOUT": 504}


#: Our own database connection failing (dropped, refused, pool exhausted, a deadlock or serialization
#: failure): the client should send the request again (a POST with the same Idempotency-Key never runs
#: twice, web/idempotency.py): 503, never 500.
DATABASE_FAILURES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError, psycopg.OperationalError,
    psycopg.InterfaceError, PoolTimeout)


def database_unavailable() -> Unavailable:
    """503 SERVICE_UNAVAILABLE (errors.md, turn 2): our own dependency failed, not a provider's."""
    return Unavailable("The database is unreachable; retry shortly", code="SERVICE_UNAVAILABLE",
                       details={"dependency": "database", "retryAfter": 1})


def status_of(error: OrchestratorError) -> int:
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    for cls, status in STATUS_BY_CLASS:
        if isinstance(error, cls):
            return status
    return 500


def error_body(error: OrchestratorError) -> dict[str, Any]:
    status = status_of(error)
    if status == 500:
        return {"error": {"code": "INTERNAL_ERROR", "statusCode": 500, "details": {},
                          "message": "An internal error occurred; report the X-Request-ID"}}
    return {"error": {"code": error.code, "message": error.message, "statusCode": status,
                      "details": error.details}}


def error_response(error: OrchestratorError, headers: dict[str, str] | None = None) -> web.Response:
    body = error_body(error)
    return web.Response(status=body["error"]["statusCode"], body=json_bytes(body),
                        content_type="application/json", charset="utf-8", headers=headers)
