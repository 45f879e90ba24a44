"""Orders: the marketplace's unit of work between a buyer and a seller (spec states.md §2, §4, §9).

The transition table is data copied from states.md §2.3; ``guard`` is the one check, and the status
column is written only by compare-and-set. This module covers the off-chain part of the lifecycle:
create (with milestones), reserve, cancel and milestone completion; the escrow flows drive the
on-chain states through chain steps (orchestrator/escrow/escrows.py). Milestones are off-chain progress
marks completed while the order is ``IN_PROGRESS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orchestrator import amounts, ids
from orchestrator.accounts import platform, treasury
from orchestrator.db import orders as orders_db
from orchestrator.db import users as users_db
from orchestrator.errors import (
    BusinessRuleViolation,
    Conflict,
    InvalidStateTransition,
    NotFound,
    ValidationFailed,
)
from orchestrator.events import iso, now
from orchestrator.money import balances, ledger
from orchestrator.money.ledger import AVAILABLE, RESERVED, user_account
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork


class Status(StrEnum):
    ORDER_CREATED = "ORDER_CREATED"
    FUNDS_RESERVED = "FUNDS_RESERVED"
    ESCROW_CREATING = "ESCROW_CREATING"
    ESCROW_FUNDING = "ESCROW_FUNDING"
    ESCROW_FUNDED = "ESCROW_FUNDED"
    IN_PROGRESS = "IN_PROGRESS"
    RELEASE_REQUESTED = "RELEASE_REQUESTED"
    RELEASED = "RELEASED"
    REFUND_REQUESTED = "REFUND_REQUESTED"
    REFUNDED = "REFUNDED"
    DISPUTED = "DISPUTED"
    CLOSED = "CLOSED"


S = Status
#: states.md §2.3, as data.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.ORDER_CREATED: frozenset({S.FUNDS_RESERVED, S.CLOSED}),
    S.FUNDS_RESERVED: frozenset({S.ESCROW_CREATING, S.CLOSED}),
    S.ESCROW_CREATING: frozenset({S.ESCROW_FUNDING, S.FUNDS_RESERVED}),
    S.ESCROW_FUNDING: frozenset({S.ESCROW_FUNDED, S.ESCROW_CREATING}),
    S.ESCROW_FUNDED: frozenset({S.IN_PROGRESS}),
    S.IN_PROGRESS: frozenset({S.RELEASE_REQUESTED, S.REFUND_REQUESTED, S.DISPUTED}),
    S.RELEASE_REQUESTED: frozenset({S.RELEASED, S.IN_PROGRESS, S.DISPUTED}),
    S.REFUND_REQUESTED: frozenset({S.REFUNDED, S.IN_PROGRESS, S.DISPUTED}),
    S.DISPUTED: frozenset({S.RELEASE_REQUESTED, S.REFUND_REQUESTED}),
    S.RELEASED: frozenset({S.CLOSED}),
    S.REFUNDED: frozenset({S.CLOSED}),
    S.CLOSED: frozenset(),
}
#: Moves only the system makes after a failed ledger step (the ``*`` of §2.3), never the API.
FAILURE_ONLY: frozenset[tuple[Status, Status]] = frozenset({
    (S.ESCROW_CREATING, S.FUNDS_RESERVED), (S.ESCROW_FUNDING, S.ESCROW_CREATING),
    (S.RELEASE_REQUESTED, S.IN_PROGRESS), (S.RELEASE_REQUESTED, S.DISPUTED),
    (S.REFUND_REQUESTED, S.IN_PROGRESS), (S.REFUND_REQUESTED, S.DISPUTED),
})


#: What each API action may do: the states it starts from and the state it moves to. Every pair is
#: an allowed, non-failure move of ``TRANSITIONS`` (a test checks), and the 409's ``allowedStates``.
ACTIONS: dict[str, tuple[frozenset[Status], Status]] = {
    "reserve": (frozenset({S.ORDER_CREATED}), S.FUNDS_RESERVED),
    "cancel": (frozenset({S.ORDER_CREATED, S.FUNDS_RESERVED}), S.CLOSED),
    "create_escrow": (frozenset({S.FUNDS_RESERVED}), S.ESCROW_CREATING),
    "fund_escrow": (frozenset({S.ESCROW_CREATING}), S.ESCROW_FUNDING),
    "release": (frozenset({S.IN_PROGRESS}), S.RELEASE_REQUESTED),
    "refund": (frozenset({S.IN_PROGRESS}), S.REFUND_REQUESTED),
    "dispute": (frozenset({S.IN_PROGRESS}), S.DISPUTED),
    "resolve_release": (frozenset({S.DISPUTED}), S.RELEASE_REQUESTED),
    "resolve_refund": (frozenset({S.DISPUTED}), S.REFUND_REQUESTED),
}


class MilestoneStatus(StrEnum):
    OPEN = "OPEN"
    COMPLETED = "COMPLETED"


#: states.md §4.
MILESTONE_TRANSITIONS: dict[MilestoneStatus, frozenset[MilestoneStatus]] = {
    MilestoneStatus.OPEN: frozenset({MilestoneStatus.COMPLETED}),
    MilestoneStatus.COMPLETED: frozenset(),
}


def guard(order: orders_db.Order, action: str) -> Status:
    """Raise ``InvalidStateTransition`` unless ``action`` may start from the order's state; returns
    the state the action moves to."""
    sources, target = ACTIONS[action]
    if order.status not in sources:
        raise InvalidStateTransition(resource="Order", id=order.id, current=order.status, action=action,
                                     allowed=sorted(sources))
    return target


def move(uow: UnitOfWork, order: orders_db.Order, action: str, **values: Any) -> None:
    """Guarded compare-and-set of the status (a concurrent move makes this one fail, never both win)."""
    target = guard(order, action)
    if not orders_db.set_status(uow.conn, order.id, expected=order.status, status=target, **values):
        raise Conflict(f"Order {order.id} changed concurrently; retry", code="BALANCE_CONCURRENCY_CONFLICT",
                       details={"suggestion": "retry the request"})


def load(uow: UnitOfWork, order_id: str) -> orders_db.Order:
    order = orders_db.get(uow.conn, order_id, for_update=True)
    if order is None:
        raise NotFound(f"Order {order_id} not found", code="ORDER_NOT_FOUND")
    return order


@dataclass(frozen=True)
class CreateOrder(Payload):
    """``POST /orders``; each milestone as the API sends it (``milestoneRef``, ``title``, ``amount``)."""

    buyer_id: str
    seller_id: str
    amount: str
    title: str
    currency: str | None = None
    description: str | None = None
    client_order_ref: str | None = None
    milestones: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None


def create(uow: UnitOfWork, command: CreateOrder) -> Result:
    """O1: record the order and its milestones; dedupe on ``clientOrderRef``."""
    buyer, seller, amount = command.buyer_id, command.seller_id, Decimal(command.amount)
    _check_parties(uow, buyer, seller)
    # an AIRTM-backed party must be linked to AirTM; an AIRTM-backed buyer's escrow is the pool's (decision 25)
    backings = treasury.require_linked(uow.conn, {"buyerId": buyer, "sellerId": seller})
    ref = command.client_order_ref
    order_id = ids.new_id("order")
    created = orders_db.create(uow.conn, id=order_id, client_order_ref=ref, buyer_id=buyer, seller_id=seller,
                               amount=amount, currency=command.currency or "USD", status=S.ORDER_CREATED,
                               title=command.title, description=command.description,
                               metadata=command.metadata,
                               funding_mode=treasury.funding_mode(backings[buyer].backing))
    if not created:
        return _existing_for_ref(uow, ref, buyer=buyer, seller=seller, amount=amount)
    orders_db.add_milestones(uow.conn, [
        {"id": ids.new_id("milestone"), "order_id": order_id, "milestone_ref": m["milestoneRef"], "position": i,
         "title": m["title"], "amount": Decimal(m["amount"])} for i, m in enumerate(command.milestones or [])])
    uow.emit("order.created", order_id, {
        "orderId": order_id, "buyerId": buyer, "sellerId": seller, "amount": amounts.format_amount(amount),
        "currency": "USD", "title": command.title, "description": command.description,
        "clientOrderRef": ref}, user_id=buyer)
    return Result(201, "order", order_id)


def _check_parties(uow: UnitOfWork, buyer: str, seller: str) -> None:
    for field, user_id in (("buyerId", buyer), ("sellerId", seller)):
        if uow.conn.execute(users_db.exists(user_id)).first() is None:
            raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND",
                           details={"userId": user_id, "field": field})
    found = platform.find(uow.conn, uow.settings) if uow.settings is not None else None
    if found is not None and found.user_id in (buyer, seller):
        field = "buyerId" if found.user_id == buyer else "sellerId"
        raise ValidationFailed.field(field, "PLATFORM_USER_NOT_ALLOWED", "the platform user cannot be a party")


def _existing_for_ref(uow: UnitOfWork, ref: str | None, *, buyer: str, seller: str, amount: Decimal) -> Result:
    existing = orders_db.by_client_ref(uow.conn, ref or "")
    assert existing is not None
    if (existing.buyer_id, existing.seller_id, existing.amount) != (buyer, seller, amount):
        raise Conflict(f"clientOrderRef {ref} belongs to another order", code="CLIENT_ORDER_REF_CONFLICT",
                       details={"clientOrderRef": ref, "orderId": existing.id})
    return Result(200, "order", existing.id)


@dataclass(frozen=True)
class ReserveOrder(Payload):
    """``POST /orders/{id}/reserve``."""

    order_id: str
    amount: str | None = None


def reserve(uow: UnitOfWork, command: ReserveOrder) -> Result:
    """O2: hold the buyer's funds for the order, atomically with the status change."""
    order = load(uow, command.order_id)
    if command.amount is not None and Decimal(command.amount) != order.amount:
        raise BusinessRuleViolation("The amount must equal the order amount", code="RESERVE_MISMATCH_AMOUNT",
                                    details={"orderAmount": amounts.format_amount(order.amount),
                                             "requested": command.amount})
    if order.status == S.FUNDS_RESERVED:
        raise Conflict("Funds are already reserved for this order", code="FUNDS_ALREADY_RESERVED",
                       details={"resource": "Order", "id": order.id, "currentState": order.status})
    guard(order, "reserve")
    changes = ledger.transfer(uow, kind="reserve", amount=order.amount, reference=order.id,
                              source=user_account(order.buyer_id, AVAILABLE),
                              destination=user_account(order.buyer_id, RESERVED))
    move(uow, order, "reserve")
    change = changes[order.buyer_id]
    balances.emit_reserved(uow, change, order.amount, order_id=order.id)
    uow.emit("order.funds_reserved", order.id, {
        "orderId": order.id, "buyerId": order.buyer_id, "amount": amounts.format_amount(order.amount),
        "currency": "USD", "reservedBalance": amounts.format_balance(change.reserved),
        "availableBalance": amounts.format_balance(change.available)}, user_id=order.buyer_id)
    return Result(200, "order", order.id)


@dataclass(frozen=True)
class CancelOrder(Payload):
    """``POST /orders/{id}/cancel``."""

    order_id: str
    reason: str | None = None
    canceled_by: str | None = None


def cancel(uow: UnitOfWork, command: CancelOrder) -> Result:
    """O3/O4: close a pre-escrow order; a reservation goes back to the buyer's available balance."""
    order = load(uow, command.order_id)
    guard(order, "cancel")
    released = order.status == S.FUNDS_RESERVED
    if released:
        changes = ledger.transfer(uow, kind="cancel_order", amount=order.amount, reference=order.id,
                                  source=user_account(order.buyer_id, RESERVED),
                                  destination=user_account(order.buyer_id, AVAILABLE))
        balances.emit_released(uow, changes[order.buyer_id], order.amount, order_id=order.id, reason="cancel")
    closed_at = now()
    move(uow, order, "cancel", final_status="CANCELED", closed_at=closed_at,
         canceled_by=command.canceled_by, cancel_reason=command.reason)
    uow.emit("order.canceled", order.id, {
        "orderId": order.id, "buyerId": order.buyer_id, "canceledBy": command.canceled_by,
        "reason": command.reason, "canceledAt": iso(closed_at), "fundsReleased": released},
        user_id=order.buyer_id)
    uow.emit("order.closed", order.id, {"orderId": order.id, "finalStatus": "CANCELED", "closedAt": iso(closed_at)},
             user_id=order.buyer_id)
    return Result(200, "order", order.id)


@dataclass(frozen=True)
class CompleteMilestone(Payload):
    """``POST /orders/{id}/milestones/{ref}/complete``."""

    order_id: str
    milestone_ref: str


def complete_milestone(uow: UnitOfWork, command: CompleteMilestone) -> Result:
    """Mark one off-chain milestone done (states.md §4); only while the order is ``IN_PROGRESS``."""
    from orchestrator.db import escrows as escrows_db

    order = load(uow, command.order_id)
    found = orders_db.milestone(uow.conn, order.id, command.milestone_ref, for_update=True)
    if found is None:
        raise NotFound(f"Milestone {command.milestone_ref} not found", code="MILESTONE_NOT_FOUND")
    if order.status != S.IN_PROGRESS or found.status != MilestoneStatus.OPEN:
        resource, current, allowed = (("Order", order.status, [S.IN_PROGRESS]) if order.status != S.IN_PROGRESS
                                      else ("Milestone", found.status, [MilestoneStatus.OPEN]))
        raise InvalidStateTransition(resource=resource, id=order.id if resource == "Order" else found.id,
                                     current=current, action="complete_milestone", allowed=allowed)
    orders_db.complete_milestone(uow.conn, found.id)
    escrow = escrows_db.live_for_order(uow.conn, order.id)
    assert escrow is not None
    done, total = orders_db.progress(uow.conn, order.id)
    uow.emit("escrow.milestone_completed", escrow.id, {
        "escrowId": escrow.id, "orderId": order.id, "milestoneRef": found.milestone_ref,
        "milestoneTitle": found.title, "amount": amounts.format_amount(found.amount), "completedAt": iso(now()),
        "completionPercentage": round(100 * done / total)}, user_id=order.seller_id)
    return Result(200, "milestone", found.id)
