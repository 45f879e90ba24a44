"""Balance events and the administrative balance operations (spec api.md §6.4)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator import amounts
from orchestrator.money import ledger
from orchestrator.money.ledger import ADJUSTMENT, AVAILABLE, RESERVED, Change, user_account
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork

#: Administrative operation -> (ledger kind, source bucket, destination bucket); ``adjustment`` is
#: the platform's counter-account, ``seller`` the seller's available balance (``release`` only).
ADMIN_OPERATIONS: dict[str, tuple[str, str, str]] = {
    "credit": ("admin_credit", "adjustment", AVAILABLE),
    "debit": ("admin_debit", AVAILABLE, "adjustment"),
    "reserve": ("admin_reserve", AVAILABLE, RESERVED),
    "cancel-reservation": ("admin_cancel_reservation", RESERVED, AVAILABLE),
    "deduct-reserved": ("admin_deduct_reserved", RESERVED, "adjustment"),
    "release": ("admin_release", RESERVED, "seller"),
}


def _base(change: Change, amount: Decimal) -> dict[str, Any]:
    fmt = amounts.format_balance
    return {"userId": change.user_id, "amount": fmt(amount), "currency": "USD",
            "previousAvailableBalance": fmt(change.available_before),
            "previousReservedBalance": fmt(change.reserved_before),
            "newAvailableBalance": fmt(change.available), "newReservedBalance": fmt(change.reserved)}


def emit_credited(uow: UnitOfWork, change: Change, amount: Decimal, *, source: str,
                  source_id: str | None = None, transaction_hash: str | None = None) -> None:
    payload = _base(change, amount) | {"source": source, "sourceId": source_id,
                                       "transactionHash": transaction_hash,
                                       "newBalance": amounts.format_balance(change.available)}
    uow.emit("balance.credited", change.user_id, payload, user_id=change.user_id)


def emit_debited(uow: UnitOfWork, change: Change, amount: Decimal, *, destination: str,
                 destination_id: str | None = None) -> None:
    payload = _base(change, amount) | {"destination": destination, "destinationId": destination_id,
                                       "newBalance": amounts.format_balance(change.available)}
    uow.emit("balance.debited", change.user_id, payload, user_id=change.user_id)


def emit_reserved(uow: UnitOfWork, change: Change, amount: Decimal, *, order_id: str | None) -> None:
    payload = _base(change, amount) | {"orderId": order_id,
                                       "reservedBalance": amounts.format_balance(change.reserved)}
    uow.emit("balance.reserved", change.user_id, payload, user_id=change.user_id)


def emit_released(uow: UnitOfWork, change: Change, amount: Decimal, *, order_id: str | None,
                  reason: str) -> None:
    payload = _base(change, amount) | {"orderId": order_id, "reason": reason}
    uow.emit("balance.released", change.user_id, payload, user_id=change.user_id)


@dataclass(frozen=True)
class AdjustBalance(Payload):
    """``POST /users/{id}/balance/{operation}`` (api.md §6.4)."""

    operation: str
    user_id: str
    amount: str
    currency: str | None = None
    description: str | None = None
    reference: str | None = None
    order_id: str | None = None
    seller_id: str | None = None


def admin_operation(uow: UnitOfWork, command: AdjustBalance) -> Result:
    """Run one administrative move against the adjustment account, with its events and audit entry."""
    operation, user_id = command.operation, command.user_id
    amount = Decimal(command.amount)
    kind, source, destination = ADMIN_OPERATIONS[operation]
    reference = command.order_id or command.reference
    seller_id: str = command.seller_id or user_id  # only ``release`` names a seller

    def account(bucket: str) -> str:
        if bucket == "adjustment":
            return ADJUSTMENT
        if bucket == "seller":
            return user_account(seller_id, AVAILABLE)
        return user_account(user_id, bucket)

    legs = [(account(source), -amount), (account(destination), amount)]
    if operation == "release":
        # Book money moving between two users without a ledger payment: through the adjustment
        # account, so each user's book still equals their wallet plus their adjustments (decision 7).
        legs = [(account(source), -amount), (ADJUSTMENT, amount), (ADJUSTMENT, -amount),
                (account(destination), amount)]
    changes = ledger.post(uow, kind=kind, legs=legs, reference=reference, description=command.description)
    _emit_admin(uow, operation, changes, amount, user_id=user_id, seller_id=seller_id, reference=reference)
    shown = changes[seller_id]
    audit_id = uow.audit(
        f"balance.{operation}", "Balance", shown.user_id, user_id=user_id,
        before={"available": amounts.format_balance(shown.available_before),
                "reserved": amounts.format_balance(shown.reserved_before)},
        after={"operation": operation, "amount": amounts.format_balance(amount), "reference": reference,
               "description": command.description, "sellerId": command.seller_id,
               "available": amounts.format_balance(shown.available),
               "reserved": amounts.format_balance(shown.reserved)})
    fmt = amounts.format_balance
    return Result(200, "balance", shown.user_id, {
        "operation": operation, "amount": amounts.format_amount(amount), "auditLogId": audit_id,
        "previousBalance": {"available": fmt(shown.available_before), "reserved": fmt(shown.reserved_before)},
        "newBalance": {"available": fmt(shown.available), "reserved": fmt(shown.reserved)}}, view=balance_view(shown))


def balance_view(change: Change) -> dict[str, Any] | None:
    """The balance as the posting left it (``Result.view``): the answer's ``balance`` then agrees with its
    ``newBalance``, and the web tier need not read it back."""
    if change.updated_at is None:
        return None
    return {"available": str(change.available), "reserved": str(change.reserved),
            "updatedAt": change.updated_at.isoformat()}


def _emit_admin(uow: UnitOfWork, operation: str, changes: dict[str, Change], amount: Decimal, *,
                user_id: str, seller_id: str, reference: str | None) -> None:
    change = changes[user_id]
    if operation == "credit":
        emit_credited(uow, change, amount, source="manual_credit", source_id=reference)
    elif operation == "debit":
        emit_debited(uow, change, amount, destination="manual_debit", destination_id=reference)
    elif operation == "reserve":
        emit_reserved(uow, change, amount, order_id=reference)
    elif operation == "cancel-reservation":
        emit_released(uow, change, amount, order_id=reference, reason="cancel")
    else:
        emit_released(uow, change, amount, order_id=reference, reason="manual")
        if operation == "release":
            emit_credited(uow, changes[seller_id], amount, source="manual_credit", source_id=reference)
