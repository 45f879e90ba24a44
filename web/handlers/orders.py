"""Orders (spec api.md §9): create, read, list, reserve, cancel, milestones."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import orders as orders_db
from orchestrator.db import prepared
from orchestrator.db import wallets as wallets_db
from orchestrator.errors import NotFound, ValidationFailed
from orchestrator.escrow import escrows
from orchestrator.providers.horizon_reads import HorizonReader
from schemas import queries, views
from schemas.base import NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown, strict_instant
from schemas.orders import (
    MILESTONE_OUT,
    ORDER_STATUSES,
    CancelBody,
    CreateOrder,
    MilestoneOut,
    RefundBody,
    ReleaseBody,
    ReserveBody,
)
from web import enqueue, render
from web.apidoc import doc
from web.auth import requires
from web.keys import ENGINE, READS, SETTINGS
from web.request_state import BODY
from web.responses import envelope, jsonable, page

#: Query names and their snake_case aliases (api.md §9.3).
_QUERY_ALIASES = {"buyer_id": "buyerId", "seller_id": "sellerId", "client_order_ref": "clientOrderRef",
                  "created_after": "createdAfter", "created_before": "createdBefore"}


@doc("Create an order (a known clientOrderRef with the same terms answers 200 with it)", body=CreateOrder,
     response=views.OrderView, status=201, also=(200,), command=True,
     errors=("USER_NOT_FOUND", "CLIENT_ORDER_REF_CONFLICT", "AIRTM_USER_NOT_LINKED"),
     example={"buyerId": "usr_buyer123", "sellerId": "usr_seller456", "amount": "100.00", "currency": "USD",
              "title": "Logo Design", "description": "Design a logo for my startup"})
@requires("write")
async def create_order(request: web.Request) -> web.Response:
    body = load(CreateOrder, request[BODY])
    limits = request.app[SETTINGS].limits["order"]
    if not limits.min <= body["amount"] <= limits.max:
        raise ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE", "outside this instance's order limits",
                                     min=f"{limits.min:.2f}", max=f"{limits.max:.2f}")
    payload = jsonable(body)
    payload["milestones"] = [jsonable(m) for m in body["milestones"] or []]
    state = await enqueue.run(request, Kind.CREATE_ORDER, payload)
    return await enqueue.respond(request, state)


@doc("Read an order with its escrow, milestones and dispute", response=views.OrderView,
     errors=("ORDER_NOT_FOUND",))
@requires("read")
async def get_order(request: web.Request) -> web.Response:
    return envelope(request, await render.order_view(request, order_id_of(request)))


@doc("List orders", query=queries.ListOrders, response=views.OrderView, many=True, paginated=True)
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
        filters["createdAfter"] = _millisecond(strict_instant("createdAfter", query["createdAfter"]))
    if "createdBefore" in query:
        filters["createdBefore"] = (_millisecond(strict_instant("createdBefore", query["createdBefore"]))
                                    + timedelta(microseconds=999))
    limit, after = page_limit(query), await render.page_after(request, orders_db.cursor_of)
    statement, params = orders_db.page(filters=filters, after=after, limit=limit)
    rows = await prepared.fetch_all(request.app[READS], statement, **params)
    return page(request, render.order_views(rows), limit=limit, ids=[r._mapping["id"] for r in rows])


@doc("Reserve the buyer's funds for the order", body=ReserveBody, response=views.OrderView, command=True,
     errors=("ORDER_NOT_FOUND", "FUNDS_ALREADY_RESERVED", "INVALID_STATE_TRANSITION", "INSUFFICIENT_FUNDS",
             "RESERVE_MISMATCH_AMOUNT", "BALANCE_CONCURRENCY_CONFLICT", "USER_NOT_FOUND"))
@requires("write")
async def reserve_order(request: web.Request) -> web.Response:
    body = load(ReserveBody, request[BODY])
    state = await enqueue.run(request, Kind.RESERVE_ORDER, jsonable({**body, "orderId": order_id_of(request)}))
    return await enqueue.respond(request, state)


@doc("Cancel an order before escrow (a reservation is released)", body=CancelBody,
     response=views.OrderView, command=True, errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION"),
     example={"reason": "Buyer changed their mind", "canceledBy": "BUYER"})
@requires("write")
async def cancel_order(request: web.Request) -> web.Response:
    body = load(CancelBody, request[BODY])
    state = await enqueue.run(request, Kind.CANCEL_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@doc("Deploy the order's escrow contract (an AirTM-backed party's roles are held by the platform's treasury "
     "or settlement account)", body=NoBody, response=views.OrderView, command=True, provider=True,
     errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION", "ESCROW_ALREADY_EXISTS", "ESCROW_NOT_READY",
             "AIRTM_USER_NOT_LINKED"))
@requires("write")
async def create_escrow(request: web.Request) -> web.Response:
    load(NoBody, request[BODY])
    state = await enqueue.run(request, Kind.CREATE_ESCROW, {"orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@doc("Fund the escrow from the buyer's wallet, or from the platform treasury for an AirTM-backed buyer",
     body=NoBody, response=views.OrderView, command=True,
     provider=True, errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION", "ESCROW_NOT_READY",
                            "ESCROW_ALREADY_FUNDED", "RESERVE_NOT_FOUND", "ESCROW_INSUFFICIENT_FUNDS",
                            "TREASURY_INSUFFICIENT_FUNDS", "ESCROW_FUNDING_FAILED"))
@requires("write")
async def fund_escrow(request: web.Request) -> web.Response:
    load(NoBody, request[BODY])
    await _buyer_holds_the_amount(request, order_id_of(request))
    state = await enqueue.run(request, Kind.FUND_ESCROW, {"orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


async def _buyer_holds_the_amount(request: web.Request, order_id: str) -> None:
    """The buyer's wallet is read on the ledger before it signs the fund call (``escrows`` holds the rule)."""
    order = await render.order_view(request, order_id)
    if not escrows.awaits_buyer_funding(order["status"], (order["escrow"] or {}).get("status")):
        return
    row = await render.fetch_one(request, wallets_db.of_user(order["buyerId"]))
    if row is None:  # an AirTM-backed buyer: the treasury funds it, and the command checks its headroom
        return
    async with HorizonReader(request.app[SETTINGS]) as horizon:
        account = await horizon.account(row.public_key)
    escrows.require_buyer_funds(account.usdc if account else None, Decimal(order["amount"]))


@doc("Release the escrow to the seller", body=ReleaseBody, response=views.OrderView, command=True,
     provider=True, errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION", "DISPUTE_ALREADY_OPEN",
                            "ESCROW_NOT_READY"), example={"requestedBy": "BUYER", "reason": "Work accepted"})
@requires("write")
async def release_order(request: web.Request) -> web.Response:
    body = load(ReleaseBody, request[BODY])
    state = await enqueue.run(request, Kind.RELEASE_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@doc("Refund the escrow to the buyer", body=RefundBody, response=views.OrderView, command=True,
     provider=True, errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION", "DISPUTE_ALREADY_OPEN",
                            "ESCROW_NOT_READY"), example={"reason": "Seller cancelled"})
@requires("write")
async def refund_order(request: web.Request) -> web.Response:
    body = load(RefundBody, request[BODY])
    state = await enqueue.run(request, Kind.REFUND_ORDER, {**body, "orderId": order_id_of(request)})
    return await enqueue.respond(request, state)


@doc("Mark a milestone completed", body=NoBody, response=MilestoneOut, command=True,
     errors=("ORDER_NOT_FOUND", "MILESTONE_NOT_FOUND", "INVALID_STATE_TRANSITION"))
@requires("write")
async def complete_milestone(request: web.Request) -> web.Response:
    load(NoBody, request[BODY])
    order_id, ref = order_id_of(request), request.match_info["milestone_ref"]
    if "\x00" in ref:  # no ref holds one, and the command's JSON payload could not store it
        raise NotFound(f"Milestone {ref!r} not found", code="MILESTONE_NOT_FOUND")
    state = await enqueue.run(request, Kind.COMPLETE_MILESTONE, {"orderId": order_id, "milestoneRef": ref})
    return await enqueue.respond(request, state)


@doc("An order's milestones, oldest first", response=MilestoneOut, many=True, errors=("ORDER_NOT_FOUND",))
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


