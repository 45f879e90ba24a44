"""AirTM routes: the account link (api.md §5.4), top-ups (§8) and the incoming webhook (§14.1).

Provider reads happen here, off the event loop; what they report is applied by a command
(``APPLY_AIRTM``), forward only, so a request and a webhook reporting the same change meet once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from actors.airtm import process_airtm_webhook
from orchestrator.airtm import links, signatures, topups
from orchestrator.airtm.sync import parse_webhook
from orchestrator.commands import Kind
from orchestrator.db import airtm as airtm_db
from orchestrator.db import topups as topups_db
from orchestrator.errors import (
    BusinessRuleViolation,
    Conflict,
    NotFound,
    Unauthorized,
    ValidationFailed,
)
from orchestrator.providers.airtm import AirtmClient
from orchestrator.results import Result
from schemas import queries, views
from schemas.airtm import TOPUP_OUT, CreateTopUp, LinkAirtm, TopUpOut
from schemas.base import NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown
from web import airtm, enqueue, render
from web.apidoc import doc
from web.auth import Credential, public, requires
from web.keys import ENGINE, EXECUTOR, SETTINGS
from web.request_state import BODY, CREDENTIAL
from web.responses import envelope, jsonable, page

log = logging.getLogger(__name__)
#: api.md §1.11: ten top-ups a minute per user (when rate limiting is on).
TOPUPS_PER_USER_PER_MINUTE = 10
STATUSES = [str(s) for s in topups.Status]


@dataclass(frozen=True)
class SystemCredential(Credential):
    """Who applies what a public route (AirTM's browser redirect) learned: the system."""

    @property
    def actor_type(self) -> str:
        return "SYSTEM"


# The link (§5.4)

@doc("Link a user to their AirTM account (checked active and verified at AirTM)", body=LinkAirtm,
     response=views.AirtmLink, command=True, provider=True,
     errors=("USER_NOT_FOUND", "AIRTM_USER_ALREADY_LINKED", "AIRTM_USER_INVALID", "PROVIDER_NOT_ENABLED"),
     example={"email": "buyer@example.com"})
@requires("write")
async def link_account(request: web.Request) -> web.Response:
    body = load(LinkAirtm, request[BODY])
    user = await render.user_from_path(request)
    airtm.require_backed(request, user)
    email = body["email"]
    link = airtm_db.to_link(await render.fetch_one(request, airtm_db.link_of(user.id)))
    if link.airtm_user_id is not None and (link.email or "").lower() == email.lower():
        return envelope(request, await render.airtm_link(request, Result(200, "airtm_link", user.id)))
    if link.airtm_user_id is not None:
        raise Conflict("The user is already linked to another AirTM account", code="AIRTM_USER_ALREADY_LINKED",
                       details={"airtmUserId": link.airtm_user_id})
    account = links.check_eligible(await airtm.call(request, lambda client: client.user(email)))
    state = await enqueue.run(request, Kind.LINK_AIRTM, {"userId": user.id, "email": email,
                                                         "airtmUserId": str(account["id"])})
    return await enqueue.respond(request, state)


async def eligible_link(request: web.Request, user_id: str) -> airtm_db.Link:
    """The user's link, re-checked at AirTM (active and verified) before money moves."""
    link = airtm_db.to_link(await render.fetch_one(request, airtm_db.link_of(user_id)))
    if link.airtm_user_id is None or not link.email:
        raise BusinessRuleViolation("The user has no linked AirTM account", code="AIRTM_USER_NOT_LINKED")
    email = link.email
    links.check_eligible(await airtm.call(request, lambda client: client.user(email)))
    return link


# Top-ups (§8)

@doc("Create a top-up: the buyer pays at AirTM, then the balance is credited", body=CreateTopUp,
     response=TopUpOut, status=201, command=True, provider=True,
     errors=("USER_NOT_FOUND", "AIRTM_USER_NOT_LINKED", "AIRTM_USER_INVALID", "PROVIDER_NOT_ENABLED"),
     example={"userId": "usr_buyer123", "amount": "100.00", "returnUrl": "https://market.example/paid",
              "cancelUrl": "https://market.example/canceled"})
@requires("write")
async def create_topup(request: web.Request) -> web.Response:
    body = load(CreateTopUp, request[BODY])
    airtm.require_backed(request, await render.load_user(request, body["userId"]))
    settings = request.app[SETTINGS]
    limits = settings.limits["topup"]
    if not limits.min <= body["amount"] <= limits.max:
        raise ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE", "outside this instance's top-up limits",
                                     min=f"{limits.min:.2f}", max=f"{limits.max:.2f}")
    body["returnUrl"] = body.get("returnUrl") or settings.topup_success_redirect_url
    body["cancelUrl"] = body.get("cancelUrl") or settings.topup_cancel_redirect_url
    for name in ("returnUrl", "cancelUrl"):
        if not body[name]:
            raise ValidationFailed.field(name, "MISSING_REQUIRED_FIELD", "required: this instance has no default")
    await eligible_link(request, body["userId"])
    await airtm.limit_per_user(request, "topups", body["userId"], TOPUPS_PER_USER_PER_MINUTE)
    state = await enqueue.run(request, Kind.CREATE_TOPUP, jsonable(body))
    return await enqueue.respond(request, state)


async def load_topup(request: web.Request) -> topups_db.TopUp:
    topup_id = render.path_id(request, "topup_id", "topup", "TOPUP_NOT_FOUND", "Top-up")
    row = await render.fetch_one(request, topups_db.by_id(topup_id))
    owner = request.query.get("userId")
    if row is None or (owner is not None and row.user_id != owner):
        raise NotFound(f"Top-up {topup_id} not found", code="TOPUP_NOT_FOUND")
    return topups_db.to_topup(row)


@doc("Read a top-up", query=queries.Owner, response=TopUpOut, errors=("TOPUP_NOT_FOUND",))
@requires("read")
async def get_topup(request: web.Request) -> web.Response:
    return envelope(request, TOPUP_OUT.dump(await load_topup(request)))


@doc("List top-ups", query=queries.ListTopUps, response=TopUpOut, many=True, paginated=True)
@requires("read")
async def list_topups(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"userId", "status", "limit", "cursor"})
    check_enums(query, {"status": STATUSES})
    limit, after = page_limit(query), await render.page_after(request, topups_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(topups_db.page(filters=dict(query), after=after, limit=limit))).all()
    found = [topups_db.to_topup(r) for r in rows]
    return page(request, [TOPUP_OUT.dump(t) for t in found], limit=limit, ids=[t.id for t in found])


async def _read_payin(request: web.Request, topup: topups_db.TopUp) -> dict[str, Any] | None:
    def read(client: AirtmClient) -> dict[str, Any] | None:
        return client.payin(topup.airtm_payin_id) if topup.airtm_payin_id else client.payin_by_code(topup.id)

    return await airtm.call(request, read)


async def apply_reported(request: web.Request, resource: str, resource_id: str, record: dict[str, Any],
                         canceled_by: str = "system") -> web.Response:
    """Apply what AirTM reported (a command, forward only) and answer with the resource."""
    state = await enqueue.run(request, Kind.APPLY_AIRTM, {"resource": resource, "id": resource_id,
                                                          "record": record, "canceledBy": canceled_by})
    return await enqueue.respond(request, state)


@doc("Re-read a top-up at AirTM (a webhook may be lost)", query=queries.Owner, body=NoBody,
     response=TopUpOut, command=True, provider=True, errors=("TOPUP_NOT_FOUND", "PROVIDER_NOT_ENABLED"))
@requires("read")
async def refresh_topup(request: web.Request) -> web.Response:
    """Re-read the pay-in (a webhook may be lost) and apply a forward move; terminal: unchanged."""
    load(NoBody, request[BODY])
    topup = await load_topup(request)
    if topup.status in topups.TERMINAL:
        return envelope(request, TOPUP_OUT.dump(topup))
    airtm.require_configured(request)
    payin = await _read_payin(request, topup)
    if payin is None:
        return envelope(request, TOPUP_OUT.dump(topup))
    return await apply_reported(request, "topup", topup.id, payin)


@doc("Cancel a top-up awaiting the buyer (once AirTM confirms)", query=queries.Owner, body=NoBody,
     response=TopUpOut, command=True, provider=True,
     errors=("TOPUP_NOT_FOUND", "INVALID_STATE_TRANSITION", "PROVIDER_NOT_ENABLED"))
@requires("write")
async def cancel_topup(request: web.Request) -> web.Response:
    """Cancel at AirTM; canceled only when AirTM confirms it or a re-read shows it (DESIGN decision 3)."""
    load(NoBody, request[BODY])
    topup = await load_topup(request)
    payin_id = topups.require_cancellable(topup)
    airtm.require_configured(request)
    answer = await airtm.call(request, lambda client: topups.cancel_at_airtm(client, topup.id, payin_id))
    if answer.canceled:
        return await apply_reported(request, "topup", topup.id, answer.record or {}, canceled_by="user")
    if answer.moved_on:  # record where it went before refusing
        await apply_reported(request, "topup", topup.id, answer.record or {})
    raise answer.refusal()


@doc("AirTM's browser redirect: 302 to the top-up's return or cancel URL (an unknown id: the instance's "
     "cancel URL)", status=302, envelope=False, errors=("TOPUP_NOT_FOUND",), id_patterns=False)
@public
async def topup_callback(request: web.Request) -> web.StreamResponse:
    """AirTM's browser redirect (§8.6): refresh when possible, then 302 by status; no envelope."""
    settings = request.app[SETTINGS]
    try:
        topup = await load_topup(request)
    except NotFound:
        if settings.topup_cancel_redirect_url:
            return _redirect(settings.topup_cancel_redirect_url)
        raise
    if topup.status not in topups.TERMINAL and settings.airtm_configured:
        request[CREDENTIAL] = SystemCredential("system", "airtm-callback", "AirTM redirect", ())
        try:
            payin = await _read_payin(request, topup)
            if payin is not None:
                await enqueue.run(request, Kind.APPLY_AIRTM, {"resource": "topup", "id": topup.id, "record": payin})
            topup = await load_topup(request)
        except Exception:  # the redirect must happen whatever AirTM or the queue did
            log.warning("Refreshing top-up %s on its callback failed", topup.id, exc_info=True)
    target = topup.return_url if topup.status in (topups.Status.SUCCEEDED, topups.Status.PROCESSING) \
        else topup.cancel_url
    return _redirect(target)


def _redirect(location: str) -> web.Response:
    """A bare 302 (the error middleware would turn a raised ``HTTPFound`` into an envelope)."""
    return web.Response(status=302, headers={"Location": location})


# The webhook (§14.1, providers.md §3.8)

def _unlimited(handler: Any) -> Any:
    """Not counted against the per-IP limit (api.md §14: webhooks are not rate limited)."""
    handler.unlimited = True
    return handler


@doc("AirTM's webhook (Svix-signed): recorded once per svix-id, processed by an actor",
     body={"type": "object", "description": "an AirTM event (providers.md §3.8)"},
     response=views.WebhookReceipt, errors=("WEBHOOK_SIGNATURE_INVALID",), tag="Webhooks",
     headers={"svix-id": "the message id", "svix-timestamp": "Unix seconds",
              "svix-signature": "space-separated v1,<base64> HMAC-SHA256 signatures"})
@_unlimited
@public
async def airtm_webhook(request: web.Request) -> web.Response:
    """Verify, record once per ``svix-id``, answer at once; an actor processes the message."""
    settings = request.app[SETTINGS]
    raw = await request.read()
    headers = {k.lower(): v for k, v in request.headers.items()}
    if settings.airtm_webhook_secret:
        message_id = signatures.verify(settings.airtm_webhook_secret, headers, raw, now=time.time())
    elif settings.is_mainnet:
        raise Unauthorized("AIRTM_WEBHOOK_SECRET is not configured", code="WEBHOOK_SIGNATURE_INVALID")
    else:
        message_id = signatures.message_id(headers)
    body = request[BODY] or {}
    message_id = message_id or str(body.get("eventId") or "")
    if not message_id:
        raise ValidationFailed.field("svix-id", "MISSING_REQUIRED_FIELD", "a message id is required")
    event_type, _ = parse_webhook(body)
    async with request.app[ENGINE].connect() as conn:
        new = (await conn.execute(airtm_db.record_webhook(message_id[:128], event_type[:64] or "unknown",
                                                          body))).first()
    if new is None:
        return envelope(request, {"status": "ok", "received": True, "duplicate": True})
    try:
        await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], process_airtm_webhook.send,
                                                         message_id[:128])
    except Exception:
        log.exception("Publishing webhook %s failed; the sweep will process it", message_id)
    return envelope(request, {"status": "ok", "received": True})
