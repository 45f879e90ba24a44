"""Disputes (spec api.md §10.3, §11): open, read, list, assign, resolve."""

from __future__ import annotations

from aiohttp import web

from orchestrator.commands import Kind
from orchestrator.db import disputes as disputes_db
from orchestrator.errors import ValidationFailed
from schemas import queries, views
from schemas.base import load
from schemas.common import check_enums, page_limit, reject_unknown
from schemas.disputes import DISPUTE_FILTERS, AssignDispute, OpenDispute, ResolveDispute
from web import enqueue, render
from web.apidoc import doc
from web.auth import requires
from web.handlers.orders import order_id_of
from web.keys import ENGINE
from web.request_state import BODY
from web.responses import envelope, jsonable, page


@doc("Open a dispute on an order in progress", body=OpenDispute, response=views.DisputeView, status=201,
     command=True, errors=("ORDER_NOT_FOUND", "INVALID_STATE_TRANSITION", "DISPUTE_ALREADY_OPEN"),
     example={"openedBy": "BUYER", "reason": "QUALITY_ISSUE"})
@requires("write")
async def open_dispute(request: web.Request) -> web.Response:
    order_id = order_id_of(request)
    body = load(OpenDispute, request[BODY])
    if body["orderId"] is not None and body["orderId"] != order_id:
        raise ValidationFailed.field("orderId", "PATH_MISMATCH", "must equal the order id in the path")
    state = await enqueue.run(request, Kind.OPEN_DISPUTE, {**body, "orderId": order_id})
    return await enqueue.respond(request, state)


@doc("Read a dispute", response=views.DisputeView, errors=("DISPUTE_NOT_FOUND",))
@requires("read")
async def get_dispute(request: web.Request) -> web.Response:
    return envelope(request, await render.dispute_view(request, _dispute_id(request)))


@doc("List disputes", query=queries.ListDisputes, response=views.DisputeView, many=True, paginated=True)
@requires("read")
async def list_disputes(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"orderId", "status", "openedBy", "assignedTo", "limit", "cursor"})
    check_enums(query, DISPUTE_FILTERS)
    limit, after = page_limit(query), await render.page_after(request, disputes_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(disputes_db.page(filters=dict(query), after=after, limit=limit))).all()
    found = [disputes_db.to_dispute(r) for r in rows]
    views = [await render.dispute_view(request, d.id, dispute=d) for d in found]
    return page(request, views, limit=limit, ids=[d.id for d in found])


@doc("Assign a dispute to a support agent", body=AssignDispute, response=views.DisputeView,
     command=True, errors=("DISPUTE_NOT_FOUND", "INVALID_STATE_TRANSITION"),
     example={"assignedTo": "agent-7", "notes": "Reviewing the delivery"})
@requires("support")
async def assign_dispute(request: web.Request) -> web.Response:
    body = load(AssignDispute, request[BODY])
    state = await enqueue.run(request, Kind.ASSIGN_DISPUTE, {**body, "disputeId": _dispute_id(request)})
    return await enqueue.respond(request, state)


@doc("Resolve a dispute: full release, full refund or a split", body=ResolveDispute,
     response=views.DisputeView, command=True, provider=True, errors=("DISPUTE_NOT_FOUND", "INVALID_STATE_TRANSITION"),
     example={"decision": "SPLIT", "releaseAmount": "80.00", "refundAmount": "20.00",
              "note": "80% of work delivered"})
@requires("support")
async def resolve_dispute(request: web.Request) -> web.Response:
    body = load(ResolveDispute, request[BODY])
    state = await enqueue.run(request, Kind.RESOLVE_DISPUTE, jsonable({**body, "disputeId": _dispute_id(request)}))
    return await enqueue.respond(request, state)


def _dispute_id(request: web.Request) -> str:
    return render.path_id(request, "dispute_id", "dispute", "DISPUTE_NOT_FOUND")
