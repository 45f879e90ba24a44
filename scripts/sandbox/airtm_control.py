"""AirTM's control plane and hosted checkout page: tests act as the buyer, as AirTM, as Svix's operator."""

from __future__ import annotations

import functools
import html
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web
from yarl import URL

from scripts.sandbox.airtm_records import AirtmError, PayIn, User
from scripts.sandbox.airtm_settings import AirtmSettings
from scripts.sandbox.airtm_store import PAYOUT_ACTIONS, AirtmStore
from scripts.sandbox.airtm_webhooks import WebhookDeliverer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json_errors(handler: Handler) -> Handler:
    """Refusals as JSON; a bad request never becomes a traceback."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except AirtmError as error:
            return _error(error.status, error.message, error.code)
        except (ValueError, TypeError) as error:
            return _error(400, str(error))

    return wrapped


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    """The control plane's error shape (`{error}`), with AirTM's reason code when there is one."""
    body = {"error": message} if code is None else {"error": message, "code": code}
    return web.json_response(body, status=status)


async def _json(request: web.Request) -> dict[str, Any]:
    text = await request.text()
    value = json.loads(text) if text.strip() else {}
    if not isinstance(value, dict):
        raise ValueError("the body must be a JSON object")
    return value


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value


def _redirect(payin: PayIn) -> str:
    """Where AirTM sends the browser afterwards: the pay-in's URI with `?code=`."""
    uri = payin.confirmation_uri if payin.status in ("PROCESSING", "CONFIRMED") else payin.cancel_uri
    return str(URL(uri).update_query(code=payin.code))


class AirtmControl:
    """Routes under `/_sandbox/airtm`, `/_sandbox/webhooks` and `/airtm/checkout`."""

    def __init__(self, store: AirtmStore, settings: AirtmSettings, webhooks: WebhookDeliverer) -> None:
        self.store = store
        self.settings = settings
        self.webhooks = webhooks

    def routes(self) -> list[web.RouteDef]:
        payin_action = "{action:confirm|cancel|fail}"
        payout_action = "{action:" + "|".join(PAYOUT_ACTIONS) + "}"
        return [
            web.get("/airtm/checkout/payin/{id}", self.checkout_page),
            web.post("/airtm/checkout/payin/{id}/{action:confirm|cancel}", self.checkout_action),
            web.post("/_sandbox/airtm/users", _json_errors(self.seed_user)),
            web.get("/_sandbox/airtm/config", _json_errors(self.get_config)),
            web.post("/_sandbox/airtm/config", _json_errors(self.set_config)),
            web.post(f"/_sandbox/airtm/payins/{{id}}/{payin_action}", _json_errors(self.drive_payin)),
            web.post("/_sandbox/airtm/payout-scripts", _json_errors(self.script_payout)),
            web.post(f"/_sandbox/airtm/payouts/{{id}}/{payout_action}", _json_errors(self.drive_payout)),
            web.get("/_sandbox/airtm/webhooks", _json_errors(self.webhook_log)),
            web.post("/_sandbox/webhooks/{id}/redeliver", _json_errors(self.redeliver)),
        ]

    # Seeding and settings

    async def seed_user(self, request: web.Request) -> web.Response:
        body = await _json(request)
        email = body.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("email is required")
        outcome = _optional(body, "payoutOutcome", str)
        if outcome is not None and outcome not in PAYOUT_ACTIONS:
            raise ValueError(f"payoutOutcome must be one of {sorted(PAYOUT_ACTIONS)}")
        user = User(
            email=email,
            status=_optional(body, "status", str) or "active",
            is_verified=body.get("isVerified", True) is not False,
            primary_email=body.get("primaryEmail", True) is not False,
            first_name=_optional(body, "firstName", str),
            last_name=_optional(body, "lastName", str),
            country=_optional(body, "country", str),
            payout_outcome=outcome,
            payout_reject_code=_optional(body, "payoutRejectCode", str),
        )
        if body.get("id") is not None:
            user.id = str(body["id"])
        return web.json_response(self.store.seed_user(user).to_state(), status=201)

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self._config())

    async def set_config(self, request: web.Request) -> web.Response:
        body = await _json(request)
        for read_only in ("apiKey", "apiSecret"):
            body.pop(read_only, None)
        balance = body.pop("enterpriseBalance", None)
        if balance is not None:
            balance = Decimal(str(balance))
            if not balance.is_finite() or balance < 0:
                raise ValueError("enterpriseBalance must be a number >= 0")
        self.settings.update(body)
        if balance is not None:
            self.store.available = balance
        return web.json_response(self._config())

    def _config(self) -> dict[str, Any]:
        read_only = {"apiKey": self.settings.api_key, "apiSecret": self.settings.api_secret}
        return self.settings.to_json() | {"enterpriseBalance": self.store.balance()["available"]} | read_only

    # Acting as the buyer and as AirTM

    async def drive_payin(self, request: web.Request) -> web.Response:
        payin = await self._act_on_payin(request, await _json(request))
        return web.json_response({"payin": payin.to_json(), "redirectUrl": _redirect(payin)})

    async def _act_on_payin(self, request: web.Request, body: dict[str, Any]) -> PayIn:
        payin_id, action = request.match_info["id"], request.match_info["action"]
        self.store.tick()
        if action == "confirm":
            email = body.get("email")
            if not isinstance(email, str) or not email:
                raise ValueError("email (a seeded user) is required to confirm")
            return self.store.confirm_payin(payin_id, email)
        if action == "cancel":
            return self.store.cancel_payin(payin_id)
        reason = _optional(body, "reason", str) or "payment failed"
        return self.store.fail_payin(payin_id, reason)

    async def script_payout(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if body.get("outcome") not in PAYOUT_ACTIONS:
            raise ValueError(f"outcome must be one of {sorted(PAYOUT_ACTIONS)}")
        script = {
            "outcome": body["outcome"],
            "code": _optional(body, "code", str),
            "airtmUserEmail": _optional(body, "airtmUserEmail", str),
            "reasonCode": _optional(body, "reasonCode", str),
            "reasonDescription": _optional(body, "reasonDescription", str),
        }
        self.store.add_script(script)
        return web.json_response(script, status=201)

    async def drive_payout(self, request: web.Request) -> web.Response:
        body = await _json(request)
        self.store.tick()
        payout = self.store.drive_payout(
            request.match_info["id"],
            request.match_info["action"],
            _optional(body, "reasonCode", str),
            _optional(body, "reasonDescription", str),
        )
        return web.json_response({"payout": payout.to_json()})

    # Webhooks

    async def webhook_log(self, request: web.Request) -> web.Response:
        return web.json_response(self.webhooks.state())

    async def redeliver(self, request: web.Request) -> web.Response:
        try:
            message = await self.webhooks.redeliver(request.match_info["id"])
        except KeyError:
            return _error(404, "no such webhook message")
        except ValueError as error:
            return _error(409, str(error))
        return web.json_response(message.to_json())

    # The hosted checkout page

    async def checkout_page(self, request: web.Request) -> web.Response:
        self.store.tick()
        payin = self.store.payins.get(request.match_info["id"])
        if payin is None:
            return _page("Pay-in not found", "<p>This payment does not exist.</p>", status=404)
        return _page(f"Pay {payin.amount} USD", _checkout_body(payin, list(self.store.users.values())))

    async def checkout_action(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        try:
            payin = await self._act_on_payin(request, {"email": form.get("email")})
        except (AirtmError, ValueError) as error:
            text = error.message if isinstance(error, AirtmError) else str(error)
            return _page("Cannot complete", f"<p>{html.escape(text)}</p>", status=409)
        raise web.HTTPFound(_redirect(payin))


def _checkout_body(payin: PayIn, users: list[User]) -> str:
    base = f"/airtm/checkout/payin/{html.escape(payin.id)}"
    options = "".join(f'<option value="{html.escape(u.email)}">' for u in users)
    summary = (
        f"<p>{html.escape(payin.description)}</p>"
        f"<p>Amount: <b>{payin.amount} USD</b> · code {html.escape(payin.code)} · "
        f"status <b id='status'>{payin.status}</b></p>"
    )
    if payin.status != "CREATED":
        return summary
    return (
        summary
        + f'<form method="post" action="{base}/confirm">'
        + '<label>AirTM e-mail <input name="email" list="users" required></label>'
        + f'<datalist id="users">{options}</datalist> <button>Confirm payment</button></form>'
        + f'<form method="post" action="{base}/cancel"><button>Cancel</button></form>'
    )


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · AirTM sandbox</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(text=text, content_type="text/html", status=status)
