"""A dispute's states, and what the end of its payout does to it: cleared for a new decision, or resolved.

Apart from ``disputes`` because the payout that ends a dispute runs in ``escrows``, which ``disputes``
itself calls to start it.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from orchestrator import amounts
from orchestrator.db import disputes as disputes_db
from orchestrator.events import iso
from orchestrator.unit_of_work import UnitOfWork


class Status(StrEnum):
    OPEN = "OPEN"
    UNDER_REVIEW = "UNDER_REVIEW"
    RESOLVED = "RESOLVED"


#: states.md §5.2 as data.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.OPEN: frozenset({Status.UNDER_REVIEW, Status.RESOLVED}),
    Status.UNDER_REVIEW: frozenset({Status.RESOLVED}),
    Status.RESOLVED: frozenset(),
}


def clear_decision(uow: UnitOfWork, dispute_id: str) -> None:
    """O22: the resolution failed before anything landed; support may decide again."""
    disputes_db.change(uow.conn, dispute_id, resolution_decision=None, release_amount=None, refund_amount=None,
                       decision_note=None, resolved_by=None)


def resolved(uow: UnitOfWork, dispute_id: str, parties: dict[str, tuple[str, Decimal, Decimal]], moment: datetime,
             fees: dict[str, str]) -> None:
    """The decision executed and both books followed: the dispute is RESOLVED (``dispute.resolved`` once)."""
    dispute = disputes_db.get(uow.conn, dispute_id, for_update=True)
    assert dispute is not None
    disputes_db.change(uow.conn, dispute.id, status=Status.RESOLVED, resolved_at=moment)
    gross = {role: amounts.format_amount(g) for role, (_, _, g) in parties.items()}
    nets = {role: amounts.format_balance(net) for role, (_, net, _) in parties.items()}
    uow.emit("dispute.resolved", dispute.id, {
        "disputeId": dispute.id, "orderId": dispute.order_id, "decision": dispute.resolution_decision,
        "decisionNote": dispute.decision_note, "resolvedBy": dispute.resolved_by, "resolvedAt": iso(moment),
        "sellerAmount": gross.get("seller", "0.00"), "buyerAmount": gross.get("buyer", "0.00"),
        "sellerNetAmount": nets.get("seller", "0.00"), "buyerNetAmount": nets.get("buyer", "0.00"), **fees})
