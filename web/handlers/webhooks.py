"""Outbound webhook endpoints and their deliveries (issue 17, DESIGN decisions 28, 36).

Endpoint changes move no money and need no ledger, so the web tier writes them itself, in one
transaction each; the rules (secrets, URL and filter checks, the limit) live in ``orchestrator.outbox.webhooks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from datetime import timedelta
from typing import Any

from aiohttp import web

from actors.webhooks import deliver_webhooks
from orchestrator import events, ids
from orchestrator.db import webhooks as webhooks_db
from orchestrator.errors import NotFound
from orchestrator.outbox import webhooks
from schemas.base import NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown, strict_instant
from schemas.queries import Page
from schemas.webhooks import (
    DELIVERY_OUT,
    DELIVERY_STATUSES,
    ENDPOINT_OUT,
    CreateEndpoint,
    DeliveryOut,
    EndpointOut,
    EndpointWithSecret,
    ListDeliveries,
    Replay,
    ReplayOut,
    RotateSecret,
    UpdateEndpoint,
)
from web import audit, render
from web.apidoc import doc
from web.auth import request_credential, requires
from web.keys import ENGINE, EXECUTOR, SETTINGS, TX_ENGINE
from web.request_state import BODY, REQUEST_ID
from web.responses import envelope, page

NOT_FOUND = ("WEBHOOK_ENDPOINT_NOT_FOUND",)
#: errors.md names no code for an unknown delivery: the generic 404 until it does.
DELIVERY_NOT_FOUND = "NOT_FOUND"
URL_ERRORS = ("WEBHOOK_URL_NOT_ALLOWED",)
RESOURCE = "WebhookEndpoint"


@doc("Register a webhook endpoint; its signing secret (`secret`) is shown only here", body=CreateEndpoint,
     response=EndpointWithSecret, status=201, errors=(*URL_ERRORS, "WEBHOOK_ENDPOINT_LIMIT"),
     example={"url": "https://marketplace.example/hooks/offerhub", "eventTypes": ["order.*", "balance.credited"]})
@requires("support")
async def create_endpoint(request: web.Request) -> web.Response:
    body = load(CreateEndpoint, request[BODY])
    settings = request.app[SETTINGS]
    event_types = webhooks.check_event_types(body["eventTypes"])
    await _check_destination(request, body["url"])
    endpoint_id, secret = ids.new_id("webhook_endpoint"), webhooks.new_secret()
    sealed = webhooks.seal(webhooks.keyring(settings), secret, endpoint_id)
    async with request.app[TX_ENGINE].begin() as conn:
        await conn.execute(webhooks_db.lock_endpoints())
        webhooks.check_limit((await conn.execute(webhooks_db.count_endpoints())).scalar_one(), settings)
        row = (await conn.execute(webhooks_db.insert_endpoint(
            id=endpoint_id, url=body["url"], description=body["description"], event_types=event_types,
            enabled=body["enabled"], disabled_reason=None if body["enabled"] else webhooks.OPERATOR,
            secret=sealed))).one()
    endpoint = webhooks_db.to_endpoint(row)
    await audit.record(request, "webhook_endpoint.created", RESOURCE, endpoint_id, after=_audited(endpoint))
    return envelope(request, {**ENDPOINT_OUT.dump(endpoint), "secret": secret}, status=201)


@doc("List webhook endpoints (never their secrets)", query=Page, response=EndpointOut, many=True, paginated=True)
@requires("read")
async def list_endpoints(request: web.Request) -> web.Response:
    reject_unknown(request.query, {"limit", "cursor"})
    limit, after = page_limit(request.query), await render.page_after(request, webhooks_db.endpoint_cursor)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(webhooks_db.endpoints_page(after=after, limit=limit))).all()
    found = [webhooks_db.to_endpoint(r) for r in rows]
    return page(request, [ENDPOINT_OUT.dump(e) for e in found], limit=limit, ids=[e.id for e in found])


@doc("A webhook endpoint", response=EndpointOut, errors=NOT_FOUND)
@requires("read")
async def get_endpoint(request: web.Request) -> web.Response:
    return envelope(request, ENDPOINT_OUT.dump(await _endpoint(request)))


@doc("Change a webhook endpoint's url, description, event types or enabled flag", body=UpdateEndpoint,
     response=EndpointOut, errors=(*NOT_FOUND, *URL_ERRORS), example={"enabled": False})
@requires("support")
async def update_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    body = load(UpdateEndpoint, request[BODY])
    changes: dict[str, Any] = {}
    if "url" in body:
        await _check_destination(request, body["url"])
        changes["url"] = body["url"]
    if "eventTypes" in body:
        changes["event_types"] = webhooks.check_event_types(body["eventTypes"])
    if "description" in body:
        changes["description"] = body["description"]
    async with request.app[TX_ENGINE].begin() as conn:
        before = await _locked(conn, endpoint_id)
        if body.get("enabled") is True and not before.enabled:  # a fresh start: no failing streak
            changes.update(enabled=True, disabled_reason=None, failing_since=None)
        elif body.get("enabled") is False and before.enabled:
            changes.update(enabled=False, disabled_reason=webhooks.OPERATOR)
        row = (await conn.execute(webhooks_db.update_endpoint(endpoint_id, **changes))).one()
        endpoint = webhooks_db.to_endpoint(row)
        if endpoint.enabled and not before.enabled:
            await conn.execute(webhooks_db.resume(endpoint_id))
        if before.enabled and not endpoint.enabled:  # an operator's disabling is announced like the others
            await conn.execute(webhooks_db.insert_event(events.build(
                "webhook_endpoint.disabled", endpoint_id,
                {"endpointId": endpoint_id, "url": endpoint.url, "reason": webhooks.OPERATOR},
                user_id=None, correlation_id=request[REQUEST_ID], actor_type=_actor_type(request))))
    disabled = before.enabled and not endpoint.enabled
    await audit.record(request, "webhook_endpoint.disabled" if disabled else "webhook_endpoint.updated", RESOURCE,
                       endpoint_id, after=_audited(endpoint))
    if endpoint.enabled and not before.enabled:
        await _kick(request, endpoint_id)  # what waited while it was disabled goes out now
    return envelope(request, ENDPOINT_OUT.dump(endpoint))


@doc("Delete a webhook endpoint with its deliveries", body=NoBody, response=EndpointOut, errors=NOT_FOUND)
@requires("support")
async def delete_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    load(NoBody, request[BODY])
    async with request.app[TX_ENGINE].begin() as conn:
        endpoint = await _locked(conn, endpoint_id)
        await conn.execute(webhooks_db.delete_endpoint(endpoint_id))
    await audit.record(request, "webhook_endpoint.deleted", RESOURCE, endpoint_id, after=_audited(endpoint))
    return envelope(request, ENDPOINT_OUT.dump(endpoint))


@doc("Rotate the signing secret; the previous one keeps signing beside it for `overlapSeconds`",
     body=RotateSecret, response=EndpointWithSecret, errors=NOT_FOUND, example={"overlapSeconds": 86400})
@requires("support")
async def rotate_secret(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    body = load(RotateSecret, request[BODY])
    ring = webhooks.keyring(request.app[SETTINGS])
    secret = webhooks.new_secret()
    async with request.app[TX_ENGINE].begin() as conn:
        before = await _locked(conn, endpoint_id)
        overlap = body["overlapSeconds"]
        row = (await conn.execute(webhooks_db.update_endpoint(
            endpoint_id, secret=webhooks.seal(ring, secret, endpoint_id),
            previous_secret=before.secret if overlap else None,
            previous_expires_at=events.now() + timedelta(seconds=overlap) if overlap else None))).one()
    endpoint = webhooks_db.to_endpoint(row)
    await audit.record(request, "webhook_endpoint.secret_rotated", RESOURCE, endpoint_id,
                       after={"overlapSeconds": overlap})
    return envelope(request, {**ENDPOINT_OUT.dump(endpoint), "secret": secret})


@doc("Send a `webhook.test` event to this endpoint only", body=NoBody, response=DeliveryOut, status=202,
     errors=NOT_FOUND)
@requires("support")
async def test_endpoint(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    load(NoBody, request[BODY])
    body = webhooks.test_event(endpoint_id, correlation_id=request[REQUEST_ID])
    async with request.app[TX_ENGINE].begin() as conn:
        await _locked(conn, endpoint_id)
        row = (await conn.execute(webhooks_db.insert_test_delivery(
            delivery_id=ids.new_id("webhook_delivery"), endpoint_id=endpoint_id, body=body))).one()
    await _kick(request, endpoint_id)
    return envelope(request, _delivery_view(row, []), status=202)


@doc("Deliver again every event relayed in a time range (after an outage), creating the deliveries it "
     "never had", body=Replay, response=ReplayOut, status=202, errors=NOT_FOUND,
     example={"since": "2026-12-01T00:00:00Z"})
@requires("support")
async def replay(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    body = load(Replay, request[BODY])
    since = strict_instant("since", body["since"])
    until = strict_instant("until", body["until"]) if body["until"] else None
    async with request.app[TX_ENGINE].begin() as conn:
        await _locked(conn, endpoint_id)
        requeued = len((await conn.execute(webhooks_db.replay_requeue(endpoint_id, since=since, until=until))).all())
        created = len((await conn.execute(webhooks_db.replay_missing(endpoint_id, since=since, until=until))).all())
    await audit.record(request, "webhook_endpoint.replayed", RESOURCE, endpoint_id,
                       after={"since": events.iso(since), "until": events.iso(until) if until else None,
                              "requeued": requeued, "created": created})
    await _kick(request, endpoint_id)
    return envelope(request, {"endpointId": endpoint_id, "requeued": requeued, "created": created}, status=202)


@doc("An endpoint's deliveries with every attempt, newest first", query=ListDeliveries, response=DeliveryOut,
     many=True, paginated=True, errors=NOT_FOUND)
@requires("read")
async def list_deliveries(request: web.Request) -> web.Response:
    endpoint_id = _endpoint_id(request)
    query = request.query
    reject_unknown(query, {"status", "limit", "cursor"})
    check_enums(query, {"status": DELIVERY_STATUSES})
    await _endpoint(request)
    limit = page_limit(query)
    after = await render.page_after(request, webhooks_db.delivery_cursor(endpoint_id))
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(webhooks_db.deliveries_page(
            endpoint_id, status=query.get("status"), after=after, limit=limit))).all()
        attempts = (await conn.execute(webhooks_db.attempts_of([r.id for r in rows[:limit]]))).all() if rows else []
    by_delivery: dict[str, list[Any]] = {}
    for attempt in attempts:
        by_delivery.setdefault(attempt.delivery_id, []).append(attempt)
    return page(request, [_delivery_view(r, by_delivery.get(r.id, [])) for r in rows], limit=limit,
                ids=[r.id for r in rows])


@doc("Deliver one delivery again now (a fresh retry window)", body=NoBody, response=DeliveryOut, status=202,
     errors=(DELIVERY_NOT_FOUND,))
@requires("support")
async def retry_delivery(request: web.Request) -> web.Response:
    delivery_id = render.path_id(request, "delivery_id", "webhook_delivery", DELIVERY_NOT_FOUND, "Webhook delivery")
    load(NoBody, request[BODY])
    async with request.app[TX_ENGINE].begin() as conn:
        row = (await conn.execute(webhooks_db.requeue(delivery_id))).first()
        if row is None:
            raise NotFound(f"Webhook delivery {delivery_id} not found", code=DELIVERY_NOT_FOUND)
        attempts = (await conn.execute(webhooks_db.attempts_of([delivery_id]))).all()
    await audit.record(request, "webhook_delivery.retried", "WebhookDelivery", delivery_id,
                       after={"endpointId": row.endpoint_id, "eventId": row.event_id})
    await _kick(request, row.endpoint_id)
    return envelope(request, _delivery_view(row, attempts), status=202)


# --- helpers -------------------------------------------------------------------------------------------

def _endpoint_id(request: web.Request) -> str:
    return render.path_id(request, "endpoint_id", "webhook_endpoint", "WEBHOOK_ENDPOINT_NOT_FOUND",
                          "Webhook endpoint")


async def _endpoint(request: web.Request) -> webhooks_db.Endpoint:
    endpoint_id = _endpoint_id(request)
    row = await render.fetch_one(request, webhooks_db.endpoint_by_id(endpoint_id))
    if row is None:
        raise webhooks.not_found(endpoint_id)
    return webhooks_db.to_endpoint(row)


async def _locked(conn: Any, endpoint_id: str) -> webhooks_db.Endpoint:
    row = (await conn.execute(webhooks_db.endpoint_by_id(endpoint_id).with_for_update())).first()
    if row is None:
        raise webhooks.not_found(endpoint_id)
    return webhooks_db.to_endpoint(row)


async def _check_destination(request: web.Request, url: str) -> None:
    """The URL's form, then its host's addresses as the delivery will check them (resolved here once more,
    since a destination's addresses may change before each attempt)."""
    settings = request.app[SETTINGS]
    target = webhooks.check_url(url, mainnet=settings.is_mainnet)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    webhooks.check_addresses([str(i[4][0]) for i in infos], allow_private=settings.webhooks_allow_private)


async def _kick(request: web.Request, endpoint_id: str) -> None:
    """Ask a webhooks worker to drain the endpoint now; if the publish fails, the scheduler's sweep will."""
    with contextlib.suppress(Exception):  # the delivery rows are committed; the sweep publishes them
        await asyncio.get_running_loop().run_in_executor(request.app[EXECUTOR], deliver_webhooks.send, endpoint_id)


def _audited(endpoint: webhooks_db.Endpoint) -> dict[str, Any]:
    return {"url": endpoint.url, "eventTypes": endpoint.event_types, "enabled": endpoint.enabled,
            "description": endpoint.description}


def _actor_type(request: web.Request) -> str:
    return request_credential(request).actor_type


def _delivery_view(row: Any, attempts: list[Any]) -> dict[str, Any]:
    values = dict(row._mapping)
    values["attempt_rows"] = [dict(a._mapping) for a in attempts]
    return DELIVERY_OUT.dump(values)
