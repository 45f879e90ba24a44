"""AirTM withdrawals (spec api.md §12, states.md §7, providers.md §3.5-3.6): money out as a payout.

``available`` is debited when the withdrawal is created (DESIGN decision 15, no reserve), and the
payout is created by an actor after that commits, with the withdrawal id as its ``code`` so a lost
answer never makes a second payout. Every later change comes from the payout's status through
``apply_payout``: forward only by rank, the two pending states alternating; ``FAILED`` and
``CANCELED`` return the amount in the same transaction as the status change, so exactly once.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from orchestrator import amounts, ids
from orchestrator.accounts import users
from orchestrator.airtm import topups
from orchestrator.db import airtm as airtm_db
from orchestrator.db import commands as commands_db
from orchestrator.db import users as users_db
from orchestrator.db import withdrawals as withdrawals_db
from orchestrator.errors import BusinessRuleViolation, NotFound
from orchestrator.events import iso, now
from orchestrator.money import balances, ledger
from orchestrator.money.ledger import AVAILABLE, user_account
from orchestrator.payments.withdrawal_states import CreateWithdrawal, Status
from orchestrator.providers.airtm import amount_of
from orchestrator.results import Result
from orchestrator.unit_of_work import Message, UnitOfWork

log = logging.getLogger(__name__)
W = Status
TERMINAL = frozenset({W.COMPLETED, W.FAILED, W.CANCELED})
#: providers.md §3.6: created < committed < pending = pending-user-action < terminal.
RANK = {W.CREATED: 0, W.COMMITTED: 1, W.PENDING: 2, W.PENDING_USER_ACTION: 2, W.COMPLETED: 3, W.FAILED: 3,
        W.CANCELED: 3}
#: AirTM payout status -> withdrawal status (§3.6); ``ERROR`` moves nothing (see ``apply_payout``).
PAYOUT_STATUS = {
    "CREATED": W.CREATED, "COMMITTED": W.COMMITTED,
    **dict.fromkeys(("PROCESSING", "PENDING_SIGNATURE", "SIGNED", "BRIDGE_CREATED", "CANCEL_REQUESTED"), W.PENDING),
    **dict.fromkeys(("PENDING", "PENDING_USER_ACTION", "BRIDGE_USER_SIGNUP_PENDING"), W.PENDING_USER_ACTION),
    **dict.fromkeys(("COMPLETED", "BRIDGE_COMPLETED", "COSMOEM_COMPLETED"), W.COMPLETED),
    **dict.fromkeys(("FAILED", "BRIDGE_FAILED", "BRIDGE_MAX_RETRIES_REACHED"), W.FAILED),
    "CANCELED": W.CANCELED,
}
#: The actor that creates (and, when asked, commits) the payout once the withdrawal is committed.
CREATE_PAYOUT = "airtm_create_payout"


def create(uow: UnitOfWork, command: CreateWithdrawal) -> Result:
    """Debit ``available`` and record the withdrawal; the payout is created after this commits."""
    user_id, amount = command.user_id, Decimal(command.amount)
    users.require_backing(uow.conn, user_id, users.Backing.AIRTM)
    link = airtm_db.lock_link(uow.conn, user_id)
    if link is None:
        raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")
    if link.airtm_user_id is None:
        raise BusinessRuleViolation("The user has no linked AirTM account", code="AIRTM_USER_NOT_LINKED")
    withdrawal_id = ids.new_id("withdrawal")
    changes = ledger.transfer(uow, kind="withdrawal_created", amount=amount, reference=withdrawal_id,
                              source=user_account(user_id, AVAILABLE), destination=ledger.WORLD_AIRTM)
    withdrawals_db.create(uow.conn, id=withdrawal_id, user_id=user_id, amount=amount, status=W.CREATED,
                          committed=False, destination_type=command.destination_type,
                          destination_ref=command.destination_ref, description=command.description,
                          commit_requested=bool(command.commit))
    balances.emit_debited(uow, changes[user_id], amount, destination="withdrawal", destination_id=withdrawal_id)
    uow.emit("withdrawal.created", withdrawal_id, {
        "withdrawalId": withdrawal_id, "userId": user_id, "amount": amounts.format_amount(amount), "currency": "USD",
        "destinationType": command.destination_type, "destinationRef": command.destination_ref},
        user_id=user_id)
    flow = uow.context.command_id or ""
    if flow:
        commands_db.start_flow(uow.conn, flow)
    uow.after_commit(Message(CREATE_PAYOUT, (withdrawal_id, flow)))
    return Result(201, "withdrawal", withdrawal_id, {"flow": True})


def apply_payout(uow: UnitOfWork, withdrawal_id: str, payout: dict[str, Any], *,
                 canceled_by: str = "system", answers_request: bool = True) -> bool:
    """Move the withdrawal to what the payout's status says, if that is forward; True when it moved."""
    withdrawal = withdrawals_db.get(uow.conn, withdrawal_id, for_update=True)
    if withdrawal is None:
        raise NotFound(f"Withdrawal {withdrawal_id} not found", code="WITHDRAWAL_NOT_FOUND")
    payout_id = str(payout.get("id") or withdrawal.airtm_payout_id or "") or None
    raw = str(payout.get("status", "")).upper()
    reason = payout.get("reasonDescription") or payout.get("failureReason")
    if withdrawal.airtm_payout_id is None and payout_id:
        withdrawals_db.set_status(uow.conn, withdrawal.id, expected=withdrawal.status, status=withdrawal.status,
                                  airtm_payout_id=payout_id)
    if raw == "ERROR":  # AirTM says to contact support: hold, alert, no refund until a terminal status
        log.error("ALERT withdrawal %s: AirTM payout %s is in ERROR (%s)", withdrawal.id, payout_id, reason)
        withdrawals_db.set_status(uow.conn, withdrawal.id, expected=withdrawal.status, status=withdrawal.status,
                                  failure_reason=f"AirTM ERROR: {reason or 'contact AirTM support'}"[:500])
        return False
    target = PAYOUT_STATUS.get(raw)
    if target is None:
        log.warning("Withdrawal %s: AirTM payout status %r is unknown; no transition", withdrawal.id, raw)
        return False
    current = Status(withdrawal.status)
    if current in TERMINAL or RANK[target] < RANK[current] or target == current:
        return False
    if RANK[target] == RANK[current] and target not in (W.PENDING, W.PENDING_USER_ACTION):
        return False
    # committed once AirTM committed it; a payout canceled or refused before its commit never was
    values: dict[str, Any] = {"committed": withdrawal.committed or target in (W.COMMITTED, W.PENDING,
                                                                               W.PENDING_USER_ACTION, W.COMPLETED)}
    fee = _fee(payout)
    if fee is not None:
        values["fee"] = fee
    if target in (W.FAILED, W.CANCELED):
        values["failure_reason"] = str(reason or f"AirTM payout {raw.lower()}")[:500]
    if target == W.COMPLETED:
        values["completed_at"] = now()
    if not withdrawals_db.set_status(uow.conn, withdrawal.id, expected=current, status=target, **values):
        return False
    _emit(uow, withdrawal, target, payout_id, payout, reason=reason, canceled_by=canceled_by,
          completed_at=values.get("completed_at"))
    if answers_request:  # past creation: the creating request is answered (a refused create fails it instead)
        topups.finish_flow(uow, "", resource_id=withdrawal.id)
    return True


def _fee(payout: dict[str, Any]) -> Decimal | None:
    parts = [payout.get(name) for name in ("airtmFee", "enterpriseFee") if payout.get(name) is not None]
    return sum((amount_of(p) for p in parts), Decimal(0)) if parts else None


def _emit(uow: UnitOfWork, withdrawal: withdrawals_db.Withdrawal, target: Status, payout_id: str | None,
          payout: dict[str, Any], *, reason: Any, canceled_by: str, completed_at: Any) -> None:
    user_id = withdrawal.user_id
    base = {"withdrawalId": withdrawal.id, "userId": user_id, "amount": amounts.format_amount(withdrawal.amount)}
    if target == W.COMMITTED:
        row = uow.conn.execute(users_db.by_id(user_id)).first()
        available = amounts.format_balance(users_db.to_user(row).available)
        uow.emit("withdrawal.committed", withdrawal.id, {**base, "currency": "USD", "availableBalance": available},
                 user_id=user_id)
    elif target == W.PENDING:
        uow.emit("withdrawal.pending", withdrawal.id, {**base, "airtmPayoutId": payout_id}, user_id=user_id)
    elif target == W.PENDING_USER_ACTION:
        uow.emit("withdrawal.pending_user_action", withdrawal.id, {
            **base, "actionRequired": str(reason or "The recipient must register or verify at AirTM"),
            "actionUrl": None, "airtmPayoutId": payout_id}, user_id=user_id)
    elif target == W.COMPLETED:
        uow.emit("withdrawal.completed", withdrawal.id, {
            **base, "currency": "USD", "completedAt": iso(completed_at), "transactionHash": None,
            "airtmPayoutId": payout_id}, user_id=user_id)
    elif target in (W.FAILED, W.CANCELED):
        failed = target == W.FAILED
        changes = ledger.transfer(uow, kind="withdrawal_failed" if failed else "withdrawal_canceled",
                                  amount=withdrawal.amount, reference=withdrawal.id, source=ledger.WORLD_AIRTM,
                                  destination=user_account(user_id, AVAILABLE))
        change = changes[user_id]
        if failed:
            uow.emit("withdrawal.failed", withdrawal.id, {
                **base, "reason": str(reason or "AirTM payout failed"), "errorCode": payout.get("reasonCode"),
                "airtmPayoutId": payout_id, "refundedToBalance": True}, user_id=user_id)
        else:
            uow.emit("withdrawal.canceled", withdrawal.id, {
                **base, "canceledBy": canceled_by, "reason": reason, "refundedToBalance": True,
                "newAvailableBalance": amounts.format_balance(change.available)}, user_id=user_id)
        balances.emit_credited(uow, change, withdrawal.amount,
                               source="withdrawal_failed" if failed else "withdrawal_canceled",
                               source_id=withdrawal.id)


def fail_creation(uow: UnitOfWork, withdrawal_id: str, *, reason: str, error_code: str | None) -> bool:
    """AirTM refused the payout (states.md §7.2 ``CREATED -> FAILED``): the amount returns once."""
    withdrawal = withdrawals_db.get(uow.conn, withdrawal_id, for_update=True)
    if withdrawal is None or withdrawal.status != W.CREATED or withdrawal.airtm_payout_id is not None:
        return False
    return apply_payout(uow, withdrawal_id, {"status": "FAILED", "reasonDescription": reason,
                                             "reasonCode": error_code}, answers_request=False)
