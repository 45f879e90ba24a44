"""AirTM's Enterprise API v2 subset over HTTP (`providers.md` §3, §4.4), mounted at `PREFIX`.

Every route passes one guard: HTTP Basic auth, the per-key rate limit, fault rules, then the clock's
due changes; every refusal is AirTM's `{code, message}` body, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from scripts.sandbox.airtm_records import CENT, AirtmError
from scripts.sandbox.airtm_settings import AirtmSettings
from scripts.sandbox.airtm_store import AirtmStore
from scripts.sandbox.faults import GENERIC_ACTIONS, Faults, answer_after_apply, apply_generic

log = logging.getLogger(__name__)

#: Where the API is mounted; fault rules name paths below it (`/payouts`, `/payins/*`), as Horizon's do.
PREFIX = "/airtm/v2"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Our pick of reason codes for answers AirTM documents only by HTTP status.
_STATUS_CODES = {401: "415904", 404: "415902", 429: "415999"}

#: Larger numbers are refused before any arithmetic (no real payment is this big).
_MAX_AMOUNT = Decimal(10) ** 12


def error_response(status: int, message: str, code: str | None = None) -> web.Response:
    """AirTM's error body for a status alone (injected faults, framework errors), or with a given code.

    AirTM's description (docs/airtm/documentation.json, 1.87.0) documents every error as `default`
    `{code, message, data?}` without an HTTP status, so a `status` fault may name the reason code
    (`params.code`) to test that clients decide by the code, whatever status comes with it."""
    code = code or _STATUS_CODES.get(status, "415998" if status >= 500 else "415901")
    return web.json_response({"code": code, "message": message}, status=status)


class RateLimiter:
    """A sliding one-second window per API key."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, per_second: int) -> bool:
        if per_second <= 0:
            return True
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and now - hits[0] >= 1.0:
            hits.popleft()
        if len(hits) >= per_second:
            return False
        hits.append(now)
        return True


class AirtmApi:
    """Handlers of the AirTM routes, sharing the store, settings and fault rules."""

    def __init__(self, store: AirtmStore, settings: AirtmSettings, faults: Faults) -> None:
        self.store = store
        self.settings = settings
        self.faults = faults
        self.limiter = RateLimiter()

    def app(self) -> web.Application:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self.guard(request, handler)

        api = web.Application(middlewares=[guard])
        api.add_routes(
            [
                web.get("/me", self.me),
                web.get("/me/balance", self.me_balance),
                web.get("/users/{email}", self.get_user),
                web.post("/payins", self.create_payin),
                web.get("/payins/by-code/{code}", self.get_payin_by_code),
                web.get("/payins/{id}", self.get_payin),
                web.delete("/payins/{id}", self.cancel_payin),
                web.post("/payouts", self.create_payout),
                web.get("/payouts/by-code/{code}", self.get_payout_by_code),
                web.post("/payouts/{id}/commit", self.commit_payout),
                web.get("/payouts/{id}/events", self.payout_events),
                web.get("/payouts/{id}", self.get_payout),
                web.delete("/payouts/{id}", self.cancel_payout),
            ]
        )
        return api

    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self._guarded(request, handler)
        except AirtmError as error:
            return web.json_response(error.body(), status=error.status)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return error_response(error.status, error.reason)
        except Exception:
            log.exception("The AirTM simulator failed on %s %s.", request.method, request.path)
            return error_response(500, "internal error")

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = self._authenticate(request)
        if not self.limiter.allow(key, self.settings.requests_per_second):
            response = error_response(429, f"rate limit: {self.settings.requests_per_second} requests per second")
            response.headers["Retry-After"] = "1"
            return response
        text = await request.text() if request.can_read_body else ""
        request["airtm_body"] = text
        path = request.path.removeprefix(PREFIX) or "/"
        rule = self.faults.match("airtm", request.method, path, _loose_json(text))
        if rule is not None and rule.action in GENERIC_ACTIONS:
            reason = rule.params.get("code")
            shaped = error_response if reason is None else (
                lambda status, message: error_response(status, message, str(reason)))
            early = await apply_generic(rule, request, shaped)
            if early is not None:
                return early
        self.store.tick()
        response = await handler(request)
        if rule is not None:
            late = await answer_after_apply(rule, request, error_response)
            if late is not None:
                return late
        return response

    def _authenticate(self, request: web.Request) -> str:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            key, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            key, secret = "", ""
        good = hmac.compare_digest(key.encode(), self.settings.api_key.encode()) & hmac.compare_digest(
            secret.encode(), self.settings.api_secret.encode()
        )
        if scheme.lower() != "basic" or not good:
            raise AirtmError(401, "415904", "unauthorized: HTTP Basic with the API key and secret required")
        return key

    # Enterprise and users

    async def me(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": self.store.enterprise_id,
                "name": "Sandbox Enterprise",
                "email": "enterprise@sandbox.airtm.local",
                "cancelPendingPayoutsAfterDays": self.settings.cancel_pending_after_days,
            }
        )

    async def me_balance(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.balance())

    async def get_user(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.user(request.match_info["email"]).to_json())

    # Pay-ins

    async def create_payin(self, request: web.Request) -> web.Response:
        body = _body(request)
        items = body.get("items")
        if not isinstance(items, list) or not items:
            raise _invalid("items must be a non-empty list")
        payin = self.store.create_payin(
            code=_text(body, "code", limit=100),
            amount=_amount(body, "amount"),
            description=_text(body, "description", limit=250),
            items=[_item(item) for item in items],
            confirmation_uri=_text(body, "confirmationUri", limit=2000),
            cancel_uri=_text(body, "cancelUri", limit=2000),
        )
        return web.json_response(payin.to_json())

    async def get_payin(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.payin(request.match_info["id"]).to_json())

    async def get_payin_by_code(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.payin_by_code(request.match_info["code"]).to_json())

    async def cancel_payin(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.cancel_payin(request.match_info["id"]).to_json())

    # Payouts

    async def create_payout(self, request: web.Request) -> web.Response:
        body = _body(request)
        fee = body.get("enterpriseFee")
        payout = self.store.create_payout(
            email=_text(body, "airtmUserEmail", limit=320),
            gross_amount=_amount(body, "amount", positive=False),
            notes=_text(body, "notes", limit=500),
            code=_text(body, "code", limit=100, required=False),
            commit=_flag(body, "commit"),
            internal_note=_text(body, "internalNote", limit=500, required=False),
            enterprise_fee=Decimal(0) if fee is None else _amount(body, "enterpriseFee", positive=False),
            require_id_verified=_flag(body, "requireIdVerified"),
        )
        return web.json_response(payout.to_json())

    async def get_payout(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.payout(request.match_info["id"]).to_json())

    async def get_payout_by_code(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.payout_by_code(request.match_info["code"]).to_json())

    async def commit_payout(self, request: web.Request) -> web.Response:
        self.store.commit_payout(request.match_info["id"])
        return web.Response(status=204)

    async def payout_events(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.payout(request.match_info["id"]).events)

    async def cancel_payout(self, request: web.Request) -> web.Response:
        return web.json_response(self.store.cancel_payout(request.match_info["id"]).to_json())


# Request bodies


def _invalid(message: str) -> AirtmError:
    return AirtmError(400, "415901", message)


def _loose_json(text: str) -> dict[str, Any] | None:
    """The body as fault rules see it (plain floats, so the fault log stays JSON)."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = json.loads(request["airtm_body"] or "null", parse_float=Decimal)
    except ValueError as error:
        raise _invalid(f"the body is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise _invalid("the body must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, *, limit: int, required: bool = True) -> Any:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{name} is required and must be a non-empty string")
    if len(value) > limit:
        raise _invalid(f"{name} is longer than {limit} characters")
    return value


def _amount(body: dict[str, Any], name: str, *, positive: bool = True) -> Decimal:
    """A JSON number of USD with at most two decimals (strings are refused, as the API types it)."""
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _invalid(f"{name} is required and must be a number")
    amount = Decimal(value)
    if not amount.is_finite() or abs(amount) > _MAX_AMOUNT:
        raise _invalid(f"{name} is out of range")
    if amount != amount.quantize(CENT):
        raise _invalid(f"{name} must have at most two decimals")
    if amount < 0 or (positive and amount == 0):
        raise _invalid(f"{name} must be {'positive' if positive else 'at least 0'}")
    return amount.quantize(CENT)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise _invalid(f"{name} must be a boolean")
    return value


def _item(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _invalid("each item must be an object")
    quantity = item.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
        raise _invalid("item quantity must be an integer >= 1")
    return {
        "description": _text(item, "description", limit=250),
        "amount": _amount(item, "amount"),
        "quantity": quantity,
    }
