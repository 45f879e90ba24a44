"""Orders (spec api.md §9): create, read, list, reserve, cancel, milestones."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import orders as orders_db
from orchestrator.db import wallets as wallets_db
from orchestrator.errors import BusinessRuleViolation, ValidationFailed
from orchestrator.providers.horizon_reads import HorizonReader
from schemas.base import NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown
from schemas.orders import (
    MILESTONE_OUT,
    ORDER_STATUSES,
    CancelBody,
    CreateOrder,
    RefundBody,
    ReleaseBody,
    ReserveBody,
)
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
    return envelope(request, await render.order_view(request, order_id_of(request)))


@requires("read")
async def list_orders(request: web.Request) -> web.Response:
    query = _query(request)
    reject_unknown(query, {"status", "buyerId", "sellerId", "clientOrderRef", "createdAfter", "createdBefore",
                           "limit", "cursor"})
    prefix = ids.PREFIXES["user"]
    for name in ("buyerId", "sellerId"):  # ids in a query are validated like ids in a body (api.md §1.3)
        if name in query and not ids.is_valid("user", query[name]):
            raise ValidationFailed.field(name, "INVALID_ID_PREFIX", f"must be an id starting with {prefix}",
                                         expectedPrefix=prefix)
    check_enums(query, {"status": ORDER_STATUSES})
    filters: dict[str, Any] = dict(query)
    # Times are compared at the API's millisecond precision (api.md §1.5), both ends inclusive: the
    # rows keep microseconds, so an order's own ``createdAt`` as ``createdBefore`` must still include it.
    if "createdAfter" in query:
        filters["createdAfter"] = _millisecond(_instant("createdAfter", query["createdAfter"]))
    if "createdBefore" in query:
        filters["createdBefore"] = (_millisecond(_instant("createdBefore", query["createdBefore"]))
                                    + timedelta(microseconds=999))
    limit, after = page_limit(query), await render.page_after(request, orders_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(orders_db.page(filters=filters, after=after, limit=limit))).all()
    found = [orders_db.to_order(r) for r in rows]
    views = [await render.order_view(request, o.id, order=o) for o in found]
    return page(request, views, limit=limit, ids=[o.id for o in found])


@requires("write")
async def reserve_order(request: web.Request) -> web.Response:
    body = load(ReserveBody(), request[BODY])
    state = await enqueue.run(request, Kind.RESERVE_ORDER, jsonable({**body, "orderId": order_id_of(request)}))
    return await enqueue.respond(request, state)


@requires("write")
async def cancel_order(request: web.Request) -> web.Response:
    body = load(CancelBody(), request[BODY])
    state = await enqueue.run(request, Kind.CANCEL_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@requires("write")
async def create_escrow(request: web.Request) -> web.Response:
    load(NoBody(), request[BODY])
    if request.app[SETTINGS].payment_provider != "crypto":  # DESIGN decision 5
        raise BusinessRuleViolation("Escrow needs on-chain wallets: not available in AirTM mode until "
                                    "treasury-backed escrow is designed", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": request.app[SETTINGS].payment_provider})
    state = await enqueue.run(request, Kind.CREATE_ESCROW, {"orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@requires("write")
async def fund_escrow(request: web.Request) -> web.Response:
    load(NoBody(), request[BODY])
    await _buyer_holds_the_amount(request, order_id_of(request))
    state = await enqueue.run(request, Kind.FUND_ESCROW, {"orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


async def _buyer_holds_the_amount(request: web.Request, order_id: str) -> None:
    """The buyer's wallet must hold the order's USDC on the ledger before it signs the fund call."""
    order = await render.order_view(request, order_id)
    escrow = order["escrow"] or {}
    if order["status"] != "ESCROW_CREATING" or escrow.get("status") != "CREATED":
        return  # the command answers the state error the spec names
    row = await render.fetch_one(request, wallets_db.of_user(order["buyerId"]))
    if row is None:
        return
    async with HorizonReader(request.app[SETTINGS]) as horizon:
        account = await horizon.account(row.public_key)
    held = account.usdc if account and account.usdc is not None else Decimal(0)
    if held < Decimal(order["amount"]):
        raise BusinessRuleViolation("The buyer's wallet holds less USDC than the order amount",
                                    code="ESCROW_INSUFFICIENT_FUNDS",
                                    details={"walletBalance": f"{held:f}", "required": order["amount"]})


@requires("write")
async def release_order(request: web.Request) -> web.Response:
    body = load(ReleaseBody(), request[BODY])
    state = await enqueue.run(request, Kind.RELEASE_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@requires("write")
async def refund_order(request: web.Request) -> web.Response:
    body = load(RefundBody(), request[BODY])
    state = await enqueue.run(request, Kind.REFUND_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@requires("write")
async def complete_milestone(request: web.Request) -> web.Response:
    load(NoBody(), request[BODY])
    state = await enqueue.run(request, Kind.COMPLETE_MILESTONE, {
        "orderId": order_id_of(request), "milestoneRef": request.match_info["milestone_ref"]})
    return await enqueue.respond(request, state)


@requires("read")
async def list_milestones(request: web.Request) -> web.Response:
    order_id = order_id_of(request)
    await render.order_view(request, order_id)  # 404 for an unknown order
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(orders_db.milestones_of(order_id))).all()
    return envelope(request, [MILESTONE_OUT.dump(orders_db.to_milestone(r)) for r in rows])


def order_id_of(request: web.Request) -> str:
    return render.path_id(request, "order_id", "order", "ORDER_NOT_FOUND")


def _query(request: web.Request) -> dict[str, str]:
    """The query with aliases resolved; a name and its alias with different values: ``ALIAS_CONFLICT`` (§1.2)."""
    query: dict[str, str] = {}
    for key, value in request.query.items():
        name = _QUERY_ALIASES.get(key, key)
        if name in query and query[name] != value:
            raise ValidationFailed.field(key, "ALIAS_CONFLICT", f"conflicts with {name}")
        query[name] = value
    return query


def _millisecond(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _instant(name: str, value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must be an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise ValidationFailed.field(name, "INVALID_FORMAT", "must carry an offset (e.g. Z)")
    return moment
