"""Request id, error envelope, authentication and limits, maintenance, JSON bodies, idempotency."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from typing import Any

import structlog
from aiohttp import web

from orchestrator import logs
from orchestrator.db import api_keys as keys_db
from orchestrator.db import maintenance as maintenance_db
from orchestrator.db import prepared
from orchestrator.errors import (
    NotFound,
    OrchestratorError,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from orchestrator.events import iso, now
from web import metrics, ratelimit
from web.auth import Handler, authenticate, check_scope
from web.errors import (
    DATABASE_FAILURES,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    database_unavailable,
    error_response,
)
from web.idempotency import idempotency
from web.keys import ENGINE, KEY_CACHE, MAINTENANCE, READS, REDIS, SETTINGS
from web.request_state import BODY, CREDENTIAL, PREFERENCE, RATE_HEADERS, REQUEST_ID

log = logging.getLogger(__name__)
access_log = logging.getLogger("web.access")
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_BODY = 1024 * 1024
#: Writes still accepted during maintenance (spec api.md §1.13): the inbound provider webhooks only, never
#: the outbound endpoints' management (DESIGN decision 28).
_MAINTENANCE_EXEMPT = re.compile(
    r"/api/v1/(admin/maintenance/.*|webhooks/(airtm|trustless-work)|auth/api-keys/[^/]+/token)")


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: request id on every response, and every failure rendered as the error envelope."""
    given = request.headers.get("X-Request-ID", "")
    request[REQUEST_ID] = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
    # A connection's requests share one task: its context is cleared before and after each request.
    structlog.contextvars.clear_contextvars()
    logs.bind(request_id=request[REQUEST_ID])
    started = time.monotonic()
    try:
        response = await _handled(request, handler)
        if not response.prepared:
            response.headers["X-Request-ID"] = request[REQUEST_ID]
            response.headers.update(request.get(RATE_HEADERS, {}))
            if request.get(PREFERENCE):
                response.headers["Preference-Applied"] = request[PREFERENCE]
        elapsed = time.monotonic() - started
        metrics.observe(request, response, elapsed)
        _access(request, response, elapsed)
        return response
    finally:
        structlog.contextvars.clear_contextvars()


def _access(request: web.Request, response: web.StreamResponse, seconds: float) -> None:
    """One line per request, with the request (and command) id the context carries."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s %s %s", request.method, request.path, response.status,
                        extra={"method": request.method, "path": request.path, "status": response.status,
                               "duration_ms": round(seconds * 1000, 2)})


async def _handled(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except OrchestratorError as error:
        return error_response(error, headers=_retry_after(error))
    except web.HTTPException as http:
        allow = getattr(http, "allowed_methods", None)
        return error_response(_from_http(http), headers={"Allow": ", ".join(sorted(allow))} if allow else None)
    except DATABASE_FAILURES:
        log.warning("The database failed during %s %s (request %s); answered 503", request.method, request.path,
                    request[REQUEST_ID], exc_info=True)
        error = database_unavailable()
        return error_response(error, headers=_retry_after(error))
    except Exception:
        log.exception("Unhandled error on %s %s (request %s)", request.method, request.path,
                      request[REQUEST_ID])
        return error_response(OrchestratorError())


def _retry_after(error: OrchestratorError) -> dict[str, str] | None:
    """``Retry-After`` for any error that says when to try again (ours, or a provider's passed on)."""
    retry = error.details.get("retryAfter")
    return {"Retry-After": str(retry)} if retry is not None else None


def _from_http(http: web.HTTPException) -> OrchestratorError:
    if isinstance(http, web.HTTPMethodNotAllowed):
        return MethodNotAllowed(f"{http.method} is not allowed here; use {', '.join(sorted(http.allowed_methods))}")
    if isinstance(http, web.HTTPRequestEntityTooLarge):
        return PayloadTooLarge()
    if isinstance(http, web.HTTPNotFound):
        return NotFound("No such route", code="NOT_FOUND")
    return OrchestratorError()


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Credential and scope for protected routes; the general rate limit for every route."""
    route_error = request.match_info.http_exception
    if route_error is not None:
        raise route_error
    settings, target = request.app[SETTINGS], request.match_info.handler
    if getattr(target, "public", False):
        if not getattr(target, "unlimited", False):
            await _limit(request, f"ip:{request.remote}")
        return await handler(request)
    try:
        credential = await authenticate(request.headers.get("Authorization"), settings=settings,
                                        reads=request.app[READS], cache=request.app[KEY_CACHE])
    except OrchestratorError:
        await _limit(request, f"ip:{request.remote}")
        raise
    request[CREDENTIAL] = credential
    await _limit(request, f"key:{credential.key_id}")
    check_scope(credential, getattr(target, "required_scope", None))
    if credential.type != "master":
        await _touch(request, credential.key_id)
    return await handler(request)


async def _limit(request: web.Request, identity: str) -> None:
    settings = request.app[SETTINGS]
    window = await ratelimit.hit(request.app[REDIS], settings.redis_prefix, identity,
                                 settings.rate_limit_per_minute)
    if settings.rate_limit_per_minute > 0:
        request[RATE_HEADERS] = window.headers()
    if not window.allowed:
        retry = max(1, window.reset - int(now().timestamp()))
        raise RateLimited(details={"limit": window.limit, "windowSeconds": ratelimit.WINDOW,
                                   "retryAfter": retry})


async def _touch(request: web.Request, key_id: str) -> None:
    """Record ``lastUsedAt`` at most once a minute per key (the statement's WHERE decides)."""
    cached = request.app[KEY_CACHE].get(key_id)
    moment = now()
    if cached is not None and cached.last_used_at and (moment - cached.last_used_at).total_seconds() < 60:
        return
    async with request.app[ENGINE].begin() as conn:
        await conn.execute(keys_db.touch(key_id, now=moment))
    request.app[KEY_CACHE].evict(key_id)


class MaintenanceSwitch:
    """The maintenance row, cached for a second; a toggle's NOTIFY drops it in every process at once.

    One read refreshes it for every request waiting: when the second ran out under load, each of a
    hundred concurrent writes read the row again (7 % of a busy web process in the issue 16 profile).
    """

    TTL = 1.0

    def __init__(self) -> None:
        self.row: Any = None
        self.read_at = -1e9
        self.reading: asyncio.Future[Any] | None = None
        self.generation = 0

    def forget(self, _: str = "") -> None:
        """A toggle happened: the next request reads again (a read already under way may predate it)."""
        self.read_at = -1e9
        self.reading = None
        self.generation += 1

    async def current(self, reads: Any) -> Any:
        if time.monotonic() - self.read_at <= self.TTL:
            return self.row
        if self.reading is None:
            self.reading = asyncio.ensure_future(self._read(reads))
        reading = self.reading
        try:
            return await asyncio.shield(reading)
        finally:
            if self.reading is reading and reading.done():
                self.reading = None

    async def _read(self, reads: Any) -> Any:
        started, generation = time.monotonic(), self.generation
        row = await prepared.fetch_one(reads, maintenance_db.CURRENT)
        if generation == self.generation:  # no toggle since it started: cache it
            self.row, self.read_at = row, started
        return row


@web.middleware
async def maintenance(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method in WRITE_METHODS and not _MAINTENANCE_EXEMPT.fullmatch(request.path):
        row = await request.app[MAINTENANCE].current(request.app[READS])
        if row is not None and row.enabled:
            raise Unavailable(row.message or "System maintenance in progress", code="MAINTENANCE_MODE",
                              details={"message": row.message,
                                       "enabledAt": iso(row.enabled_at) if row.enabled_at else None})
    return await handler(request)


@web.middleware
async def json_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Parse a JSON object body once (``request[BODY]``); refuse other media types, huge bodies, and text
    the database cannot store (NUL characters, lone surrogates) in the body or the query string."""
    for name, value in request.query.items():
        if not _storable(value):
            raise ValidationFailed.field(name, "INVALID_FORMAT", "must not contain NUL characters")
    request[BODY] = None
    if request.method in WRITE_METHODS:
        request[BODY] = await _read_body(request)
        bad = _unstorable_field(request[BODY])
        if bad is not None:
            raise ValidationFailed.field(bad, "INVALID_FORMAT", "must not contain NUL characters or lone surrogates")
    return await handler(request)


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _unstorable_field(body: Any) -> str | None:
    """The path of the first string (key or value) PostgreSQL could not store, walked without recursion."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str) and not _storable(value):
            return path or "body"
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if not _storable(key):
                    return path or "body"
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
    return None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """A JSON number as a float; one too large for it (``1e999``) cannot be stored as JSON again."""
    # amounts never arrive here: schemas.fields.Amount refuses a JSON number (INVALID_TYPE)
    value = float(text)  # not money
    if math.isinf(value):
        raise ValueError(f"{text} is out of range")
    return value


async def _read_body(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_BODY:
        raise PayloadTooLarge()
    raw = await request.read() if request.body_exists else b""
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        body = json.loads(raw, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError):
        raise ValidationFailed("Request body is not valid JSON", details={"fields": [
            {"field": "body", "code": "INVALID_JSON", "message": "body is not valid JSON"}]}) from None
    if not isinstance(body, dict):
        raise ValidationFailed.field("body", "INVALID_TYPE", "body must be a JSON object")
    return body


def setup_middlewares(app: web.Application) -> None:
    app.middlewares.extend([request_context, authentication, maintenance, json_body, idempotency])
