"""Disputes (spec states.md §5, api.md §10.3 and §11): open, assign, resolve on the ledger.

Opening freezes the order (no ledger transaction); resolving records the decision at once and runs
the two ledger steps (the buyer disputes the escrow, the platform resolves it with the decision's
distributions) through the same payout machinery as a refund; the dispute is RESOLVED when the book
has credited what the contract paid. A resolution that fails before anything landed clears the
decision so support can decide again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orchestrator import amounts, ids
from orchestrator.db import disputes as disputes_db
from orchestrator.db import escrows as escrows_db
from orchestrator.errors import Conflict, InvalidStateTransition, NotFound, ValidationFailed
from orchestrator.escrow import escrows, orders
from orchestrator.escrow.dispute_outcomes import Status
from orchestrator.events import iso, now
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork

OPENED_BY = ("BUYER", "SELLER")
REASONS = ("NOT_DELIVERED", "QUALITY_ISSUE", "OTHER")
DECISIONS = ("FULL_RELEASE", "FULL_REFUND", "SPLIT")


def load(uow: UnitOfWork, dispute_id: str) -> disputes_db.Dispute:
    dispute = disputes_db.get(uow.conn, dispute_id, for_update=True)
    if dispute is None:
        raise NotFound(f"Dispute {dispute_id} not found", code="DISPUTE_NOT_FOUND")
    return dispute


def open_dispute(uow: UnitOfWork, payload: dict[str, Any]) -> Result:
    """O17: only from IN_PROGRESS; one dispute per order, ever."""
    order = orders.load(uow, payload["orderId"])
    existing = disputes_db.of_order_now(uow.conn, order.id)
    if existing is not None and existing.status != Status.RESOLVED:
        raise Conflict("A dispute is already open on this order", code="DISPUTE_ALREADY_OPEN",
                       details={"disputeId": existing.id, "currentState": existing.status})
    orders.guard(order, "dispute")
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    assert escrow is not None
    dispute_id, opened_at = ids.new_id("dispute"), now()
    disputes_db.create(uow.conn, id=dispute_id, order_id=order.id, opened_by=payload["openedBy"],
                       reason=payload["reason"], evidence=payload.get("evidence") or [], status=Status.OPEN)
    orders.move(uow, order, "dispute")
    escrows_db.set_status(uow.conn, escrow.id, expected=escrows.E.FUNDED, status=escrows.E.DISPUTED)
    uow.emit("dispute.opened", dispute_id, {
        "disputeId": dispute_id, "orderId": order.id, "openedBy": payload["openedBy"], "reason": payload["reason"],
        "evidence": payload.get("evidence") or [], "openedAt": iso(opened_at)}, user_id=order.buyer_id)
    uow.emit("order.disputed", order.id, {"orderId": order.id, "disputeId": dispute_id,
                                          "openedBy": payload["openedBy"], "reason": payload["reason"],
                                          "openedAt": iso(opened_at)}, user_id=order.buyer_id)
    return Result(201, "dispute", dispute_id)


def assign(uow: UnitOfWork, payload: dict[str, Any]) -> Result:
    dispute = load(uow, payload["disputeId"])
    if dispute.status != Status.OPEN or dispute.resolution_decision is not None:
        raise InvalidStateTransition(resource="Dispute", id=dispute.id, current=dispute.status, action="assign",
                                     allowed=[Status.OPEN])
    disputes_db.change(uow.conn, dispute.id, status=Status.UNDER_REVIEW, assigned_to=payload["assignedTo"],
                       assignment_notes=payload.get("notes"))
    uow.emit("dispute.under_review", dispute.id, {
        "disputeId": dispute.id, "orderId": dispute.order_id, "reviewedBy": payload["assignedTo"],
        "reviewStartedAt": iso(now()), "notes": payload.get("notes")})
    return Result(200, "dispute", dispute.id)


def resolve(uow: UnitOfWork, payload: dict[str, Any]) -> Result:
    """O18/O19: record the decision, move the order to *_REQUESTED and run the resolution on the ledger."""
    dispute = load(uow, payload["disputeId"])
    if dispute.status == Status.RESOLVED or dispute.resolution_decision is not None:
        raise InvalidStateTransition(resource="Dispute", id=dispute.id, current=dispute.status, action="resolve",
                                     allowed=[Status.OPEN, Status.UNDER_REVIEW])
    order = orders.load(uow, dispute.order_id)
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    assert escrow is not None
    shares = _shares(payload, order.amount)
    resolved_by = payload.get("resolvedBy") or dispute.assigned_to or uow.context.actor_id
    disputes_db.change(uow.conn, dispute.id, resolution_decision=payload["decision"],
                       release_amount=shares.get("seller", Decimal(0)), refund_amount=shares.get("buyer", Decimal(0)),
                       decision_note=payload.get("note"), resolved_by=resolved_by)
    escrows.start_payout(uow, order, escrow, "dispute", shares=shares, escrow_status=None, requested_by=resolved_by,
                         reason=payload.get("note"), dispute_id=dispute.id)
    return Result(200, "dispute", dispute.id, {"flow": True})


def _shares(payload: dict[str, Any], total: Decimal) -> dict[str, Decimal]:
    decision = payload["decision"]
    if decision == "FULL_RELEASE":
        return {"seller": total}
    if decision == "FULL_REFUND":
        return {"buyer": total}
    release, refund = Decimal(payload["releaseAmount"]), Decimal(payload["refundAmount"])
    if release + refund != total:
        raise ValidationFailed("releaseAmount + refundAmount must equal the escrow total", details={
            "fields": [{"field": "releaseAmount", "code": "SPLIT_SUM_MISMATCH",
                        "message": "releaseAmount + refundAmount must equal the escrow total"}],
            "expectedTotal": amounts.format_amount(total)})
    return {"seller": release, "buyer": refund}
