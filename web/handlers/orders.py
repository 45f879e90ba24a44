"""Orders (spec api.md §9): create, read, list, reserve, cancel, milestones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import orders as orders_db
from orchestrator.errors import NotFound, ValidationFailed
from schemas.base import load
from schemas.common import page_limit, reject_unknown
from schemas.orders import MILESTONE_OUT, ORDER_STATUSES, CancelBody, CreateOrder, ReserveBody
from web import enqueue, render
from web.auth import requires
from web.keys import ENGINE, SETTINGS
from web.request_state import BODY
from web.responses import envelope, jsonable, page

#: Query names and their snake_case aliases (api.md §9.3).
_QUERY_ALIASES = {"buyer_id": "buyerId", "seller_id": "sellerId", "client_order_ref": "clientOrderRef",
                  "created_after": "createdAfter", "created_before": "createdBefore"}


@requires("write")
async def create_order(request: web.Request) -> web.Response:
    body = load(CreateOrder(), request[BODY])
    limits = request.app[SETTINGS].limits["order"]
    if not limits.min <= body["amount"] <= limits.max:
        raise ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE", "outside this instance's order limits",
                                     min=f"{limits.min:.2f}", max=f"{limits.max:.2f}")
    payload = jsonable(body)
    payload["milestones"] = [jsonable(m) for m in body["milestones"] or []]
    state = await enqueue.run(request, Kind.CREATE_ORDER, payload)
    return await enqueue.respond(request, state)


@requires("read")
async def get_order(request: web.Request) -> web.Response:
    return envelope(request, await render.order_view(request, _order_id(request)))


@requires("read")
async def list_orders(request: web.Request) -> web.Response:
    query = {_QUERY_ALIASES.get(k, k): v for k, v in request.query.items()}
    reject_unknown(query, {"status", "buyerId", "sellerId", "clientOrderRef", "createdAfter", "createdBefore",
                           "limit", "cursor"})
    if "status" in query and query["status"] not in ORDER_STATUSES:
        raise ValidationFailed.field("status", "INVALID_ENUM", "unknown order status", allowed=ORDER_STATUSES)
    filters: dict[str, Any] = dict(query)
    for name in ("createdAfter", "createdBefore"):
        if name in query:
            filters[name] = _instant(name, query[name])
    limit, after = page_limit(query), await render.page_after(request, orders_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(orders_db.page(filters=filters, after=after, limit=limit))).all()
    found = [orders_db.to_order(r) for r in rows]
    views = [await render.order_view(request, o.id, order=o) for o in found]
    return page(request, views, limit=limit, ids=[o.id for o in found])


@requires("write")
async def reserve_order(request: web.Request) -> web.Response:
    body = load(ReserveBody(), request[BODY])
    state = await enqueue.run(request, Kind.RESERVE_ORDER, jsonable({**body, "orderId": _order_id(request)}))
    return await enqueue.respond(request, state)


@requires("write")
async def cancel_order(request: web.Request) -> web.Response:
    body = load(CancelBody(), request[BODY])
    state = await enqueue.run(request, Kind.CANCEL_ORDER, {**body, "orderId": _order_id(request)})
    return await enqueue.respond(request, state)


@requires("read")
async def list_milestones(request: web.Request) -> web.Response:
    order_id = _order_id(request)
    await render.order_view(request, order_id)  # 404 for an unknown order
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(orders_db.milestones_of(order_id))).all()
    return envelope(request, [MILESTONE_OUT.dump(orders_db.to_milestone(r)) for r in rows])


def _order_id(request: web.Request) -> str:
    order_id = request.match_info["order_id"]
    if not ids.is_valid("order", order_id):
        raise NotFound(f"Order {order_id} not found", code="ORDER_NOT_FOUND")
    return order_id


def _instant(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must be an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must carry an offset (e.g. Z)")
    return moment
