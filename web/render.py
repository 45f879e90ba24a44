"""Renders a finished command's result: the resource it names, read fresh, in its response shape."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from orchestrator import amounts, ids
from orchestrator.db import airtm as airtm_db
from orchestrator.db import api_keys as keys_db
from orchestrator.db import disputes as disputes_db
from orchestrator.db import maintenance as maintenance_db
from orchestrator.db import orders as orders_db
from orchestrator.db import prepared
from orchestrator.db import topups as topups_db
from orchestrator.db import users as users_db
from orchestrator.db import withdrawals as withdrawals_db
from orchestrator.errors import NotFound, ValidationFailed
from orchestrator.events import iso
from orchestrator.results import Result
from schemas.airtm import TOPUP_OUT
from schemas.api_keys import KEY_OUT
from schemas.balances import BALANCE_OUT
from schemas.compiled import dumper
from schemas.disputes import DISPUTE_OUT
from schemas.orders import ESCROW_OUT, MILESTONE_OUT, ORDER_OUT
from schemas.users import USER_OUT
from schemas.withdrawals import WITHDRAWAL_OUT
from web.keys import ENGINE, READS

#: Orders render on every order read and twenty to a page, a balance on every balance read and operation:
#: compiled once (schemas/compiled.py, issue 16).
_ORDER = dumper(ORDER_OUT)
#: The same, read from result rows as they come (``orders_db.VIEW_BY_ID`` and page rows, ``view_parts``):
#: building an Order, Milestone and Escrow per row first was a sixth of a page's rendering.
_ORDER_ROW, _ESCROW_ROW, _MILESTONE_ROW = (dumper(ORDER_OUT, mapping=True), dumper(ESCROW_OUT, mapping=True),
                                          dumper(MILESTONE_OUT, mapping=True))
BALANCE = dumper(BALANCE_OUT)

Renderer = Callable[[web.Request, Result], Awaitable[Any]]


async def fetch_one(request: web.Request, statement: Any) -> Any:
    async with request.app[ENGINE].connect() as conn:
        return (await conn.execute(statement)).first()


async def page_after(request: web.Request, cursor_of: Callable[[str], Any]) -> tuple[Any, ...] | None:
    """The (created_at, id) a list page starts after, from the ``cursor`` query; unknown: 400."""
    cursor = request.query.get("cursor")
    if cursor is None:
        return None
    row = await fetch_one(request, cursor_of(cursor))
    if row is None:
        raise ValidationFailed.field("cursor", "INVALID_CURSOR", "unknown cursor")
    return tuple(row)


def path_id(request: web.Request, param: str, resource: str, code: str, label: str | None = None) -> str:
    """An id from the path; a wrong prefix is the resource's 404, like an unknown id (api.md §1.3)."""
    value = request.match_info[param]
    if not ids.is_valid(resource, value):
        raise NotFound(f"{label or resource.capitalize()} {value} not found", code=code)
    return value


def user_id_from_path(request: web.Request) -> str:
    return path_id(request, "user_id", "user", "USER_NOT_FOUND")


def user_not_found(user_id: str) -> NotFound:
    return NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")


async def user_from_path(request: web.Request) -> users_db.User:
    return await load_user(request, user_id_from_path(request))


async def load_user(request: web.Request, user_id: str) -> users_db.User:
    row = await prepared.fetch_one(request.app[READS], users_db.BY_ID, user_id=user_id)
    if row is None:
        raise user_not_found(user_id)
    return users_db.to_user(row)


async def user(request: web.Request, result: Result) -> Any:
    return USER_OUT.dump(await load_user(request, result.id))


async def balance(request: web.Request, result: Result) -> Any:
    """The balance a command answers with: as its own transaction left it when the result carries it
    (``Result.view``, no read), else as it stands."""
    current = BALANCE(_balance_of(result.id, result.view) if result.view else await load_user(request, result.id))
    if "operation" not in result.data:
        return current
    return {"balance": current, **result.data}


@dataclass(frozen=True)
class _BalanceView:
    """What ``BALANCE_OUT`` reads of a user, from a command's ``Result.view``."""

    id: str
    available: Decimal
    reserved: Decimal
    balance_updated_at: datetime


def _balance_of(user_id: str, view: dict[str, Any]) -> _BalanceView:
    return _BalanceView(user_id, Decimal(view["available"]), Decimal(view["reserved"]),
                        datetime.fromisoformat(view["updatedAt"]))


async def api_key(request: web.Request, result: Result) -> Any:
    row = await fetch_one(request, keys_db.by_id(result.id))
    if row is None:  # a key whose create has not run yet (a 202)
        raise NotFound(f"API key {result.id} not found", code="API_KEY_NOT_FOUND")
    return KEY_OUT.dump(keys_db.to_key(row))


async def maintenance_status(request: web.Request, result: Result | None = None) -> Any:
    row = (await fetch_one(request, maintenance_db.current()))._mapping
    return {"enabled": row["enabled"], "message": row["message"],
            "enabledAt": iso(row["enabled_at"]) if row["enabled_at"] else None,
            "enabledBy": row["enabled_by"]}


async def order_view(request: web.Request, order_id: str, *, order: orders_db.Order | None = None) -> Any:
    """An order with its milestones, escrow and dispute summary, read in one statement."""
    row = await prepared.fetch_one(request.app[READS], orders_db.VIEW_BY_ID, order_id=order_id)
    if row is None:
        if order is None:
            raise NotFound(f"Order {order_id} not found", code="ORDER_NOT_FOUND")
        return _order_out(_ORDER(order), [], None, None)
    return _order_out(_ORDER(order) if order else _ORDER_ROW(row), *orders_db.view_parts(row))


def order_views(rows: list[Any]) -> list[Any]:
    """A page of orders (rows of ``orders_db.page``, each with its related rows) as ``order_view`` renders
    each."""
    return [_order_out(_ORDER_ROW(row), *orders_db.view_parts(row)) for row in rows]


def _order_out(out: dict[str, Any], milestone_rows: list[Any], escrow: Any, dispute: Any) -> Any:
    """The order's own fields (``out``) with its milestones, escrow and dispute summary set in."""
    summary = None
    if dispute is not None:  # orders_db.DISPUTE_SUMMARY
        summary = {"id": dispute["id"], "status": dispute["status"], "openedBy": dispute["opened_by"],
                   "reason": dispute["reason"], "resolutionDecision": dispute["resolution_decision"]}
    out["milestones"] = [_MILESTONE_ROW(r) for r in milestone_rows]
    out["escrow"] = _ESCROW_ROW(escrow) if escrow else None
    out["dispute"] = summary
    return out


async def dispute_view(request: web.Request, dispute_id: str, *,
                       dispute: disputes_db.Dispute | None = None) -> Any:
    """A dispute with the summary of its order (api.md §2.8)."""
    async with request.app[ENGINE].connect() as conn:
        if dispute is None:
            row = (await conn.execute(disputes_db.by_id(dispute_id))).first()
            if row is None:
                raise NotFound(f"Dispute {dispute_id} not found", code="DISPUTE_NOT_FOUND")
            dispute = disputes_db.to_dispute(row)
        order = orders_db.to_order((await conn.execute(orders_db.by_id(dispute.order_id))).one())
    summary = {"id": order.id, "status": order.status, "finalStatus": order.final_status,
               "amount": amounts.format_amount(order.amount), "currency": order.currency, "buyerId": order.buyer_id,
               "sellerId": order.seller_id}
    return {**DISPUTE_OUT.dump(dispute), "order": summary, "settlement": order.settlement}


async def dispute_result(request: web.Request, result: Result) -> Any:
    return await dispute_view(request, result.id)


async def order(request: web.Request, result: Result) -> Any:
    return await order_view(request, result.id)


async def milestone(request: web.Request, result: Result) -> Any:
    """By id, or (a pending command names no milestone id) by its order's id and ``milestoneRef``."""
    ref = result.data.get("milestoneRef")
    row = await fetch_one(request, orders_db.milestone_of(result.id, ref) if ref is not None
                          else orders_db.milestone_by_id(result.id))
    if row is None:
        raise NotFound(f"Milestone {ref or result.id} not found", code="MILESTONE_NOT_FOUND")
    return MILESTONE_OUT.dump(orders_db.to_milestone(row))


async def withdrawal(request: web.Request, result: Result) -> Any:
    row = await fetch_one(request, withdrawals_db.by_id(result.id))
    if row is None:
        raise NotFound(f"Withdrawal {result.id} not found", code="WITHDRAWAL_NOT_FOUND")
    return WITHDRAWAL_OUT.dump(withdrawals_db.to_withdrawal(row))


async def topup(request: web.Request, result: Result) -> Any:
    row = await fetch_one(request, topups_db.by_id(result.id))
    if row is None:
        raise NotFound(f"Top-up {result.id} not found", code="TOPUP_NOT_FOUND")
    return TOPUP_OUT.dump(topups_db.to_topup(row))


async def airtm_link(request: web.Request, result: Result) -> Any:
    link = airtm_db.to_link(await fetch_one(request, airtm_db.link_of(result.id)))
    return {"userId": link.user_id, "airtmUserId": link.airtm_user_id,
            "airtmLinkedAt": iso(link.linked_at) if link.linked_at else None, "eligible": True, "email": link.email}


RENDERERS: dict[str, Renderer] = {
    "user": user, "balance": balance, "api_key": api_key, "maintenance": maintenance_status, "order": order,
    "milestone": milestone, "dispute": dispute_result, "withdrawal": withdrawal,
    "topup": topup, "airtm_link": airtm_link,
}


async def render(request: web.Request, result: Result) -> Any:
    return await RENDERERS[result.resource](request, result)
