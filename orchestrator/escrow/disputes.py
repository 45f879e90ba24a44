"""Disputes (spec states.md §5, api.md §10.3 and §11): open, assign, resolve on the ledger.

Opening freezes the order (no ledger transaction); resolving records the decision at once and runs
the two ledger steps (the buyer disputes the escrow, the platform resolves it with the decision's
distributions) through the same payout machinery as a refund; the dispute is RESOLVED when the book
has credited what the contract paid. A resolution that fails before anything landed clears the
decision so support can decide again.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator import amounts, ids
from orchestrator.db import disputes as disputes_db
from orchestrator.db import escrows as escrows_db
from orchestrator.errors import Conflict, InvalidStateTransition, NotFound, ValidationFailed
from orchestrator.escrow import escrows, orders
from orchestrator.escrow.dispute_outcomes import Status
from orchestrator.events import iso, now
from orchestrator.payloads import Payload
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


@dataclass(frozen=True)
class OpenDispute(Payload):
    """``POST /orders/{id}/resolution/dispute``."""

    order_id: str
    opened_by: str
    reason: str
    evidence: list[Any] | None = None


def open_dispute(uow: UnitOfWork, command: OpenDispute) -> Result:
    """O17: only from IN_PROGRESS; one dispute per order, ever."""
    order = orders.load(uow, command.order_id)
    existing = disputes_db.of_order_now(uow.conn, order.id)
    if existing is not None and existing.status != Status.RESOLVED:
        raise Conflict("A dispute is already open on this order", code="DISPUTE_ALREADY_OPEN",
                       details={"disputeId": existing.id, "currentState": existing.status})
    orders.guard(order, "dispute")
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    assert escrow is not None
    dispute_id, opened_at = ids.new_id("dispute"), now()
    disputes_db.create(uow.conn, id=dispute_id, order_id=order.id, opened_by=command.opened_by,
                       reason=command.reason, evidence=command.evidence or [], status=Status.OPEN)
    orders.move(uow, order, "dispute")
    escrows_db.set_status(uow.conn, escrow.id, expected=escrows.E.FUNDED, status=escrows.E.DISPUTED)
    uow.emit("dispute.opened", dispute_id, {
        "disputeId": dispute_id, "orderId": order.id, "openedBy": command.opened_by, "reason": command.reason,
        "evidence": command.evidence or [], "openedAt": iso(opened_at)}, user_id=order.buyer_id)
    uow.emit("order.disputed", order.id, {"orderId": order.id, "disputeId": dispute_id,
                                          "openedBy": command.opened_by, "reason": command.reason,
                                          "openedAt": iso(opened_at)}, user_id=order.buyer_id)
    return Result(201, "dispute", dispute_id)


@dataclass(frozen=True)
class AssignDispute(Payload):
    """``POST /disputes/{id}/assign``."""

    dispute_id: str
    assigned_to: str
    notes: str | None = None


def assign(uow: UnitOfWork, command: AssignDispute) -> Result:
    dispute = load(uow, command.dispute_id)
    if dispute.status != Status.OPEN or dispute.resolution_decision is not None:
        raise InvalidStateTransition(resource="Dispute", id=dispute.id, current=dispute.status, action="assign",
                                     allowed=[Status.OPEN])
    disputes_db.change(uow.conn, dispute.id, status=Status.UNDER_REVIEW, assigned_to=command.assigned_to,
                       assignment_notes=command.notes)
    uow.emit("dispute.under_review", dispute.id, {
        "disputeId": dispute.id, "orderId": dispute.order_id, "reviewedBy": command.assigned_to,
        "reviewStartedAt": iso(now()), "notes": command.notes})
    return Result(200, "dispute", dispute.id)


@dataclass(frozen=True)
class ResolveDispute(Payload):
    """``POST /disputes/{id}/resolve``; the two amounts only for ``SPLIT``."""

    dispute_id: str
    decision: str
    release_amount: str | None = None
    refund_amount: str | None = None
    note: str | None = None
    resolved_by: str | None = None


def resolve(uow: UnitOfWork, command: ResolveDispute) -> Result:
    """O18/O19: record the decision, move the order to *_REQUESTED and run the resolution on the ledger."""
    dispute = load(uow, command.dispute_id)
    if dispute.status == Status.RESOLVED or dispute.resolution_decision is not None:
        raise InvalidStateTransition(resource="Dispute", id=dispute.id, current=dispute.status, action="resolve",
                                     allowed=[Status.OPEN, Status.UNDER_REVIEW])
    order = orders.load(uow, dispute.order_id)
    escrow = escrows_db.live_for_order(uow.conn, order.id, for_update=True)
    assert escrow is not None
    shares = _shares(command, order.amount)
    resolved_by = command.resolved_by or dispute.assigned_to or uow.context.actor_id
    disputes_db.change(uow.conn, dispute.id, resolution_decision=command.decision,
                       release_amount=shares.get("seller", Decimal(0)), refund_amount=shares.get("buyer", Decimal(0)),
                       decision_note=command.note, resolved_by=resolved_by)
    escrows.start_payout(uow, order, escrow, "dispute", shares=shares, escrow_status=None, requested_by=resolved_by,
                         reason=command.note, dispute_id=dispute.id)
    return Result(200, "dispute", dispute.id, {"flow": True})


def _shares(command: ResolveDispute, total: Decimal) -> dict[str, Decimal]:
    if command.decision == "FULL_RELEASE":
        return {"seller": total}
    if command.decision == "FULL_REFUND":
        return {"buyer": total}
    if command.release_amount is None or command.refund_amount is None:  # the schema requires both for SPLIT
        raise ValidationFailed.field("releaseAmount", "MISSING_REQUIRED_FIELD", "a SPLIT names both amounts")
    release, refund = Decimal(command.release_amount), Decimal(command.refund_amount)
    if release + refund != total:
        raise ValidationFailed("releaseAmount + refundAmount must equal the escrow total", details={
            "fields": [{"field": "releaseAmount", "code": "SPLIT_SUM_MISMATCH",
                        "message": "releaseAmount + refundAmount must equal the escrow total"}],
            "expectedTotal": amounts.format_amount(total)})
    return {"seller": release, "buyer": refund}
