"""Withdrawals (spec states.md §7, api.md §12): money out of the book and, for crypto, out of the wallet.

A crypto withdrawal debits ``available`` when it is created and is COMMITTED in the same call; the
payment from the user's wallet is a chain step with the never-twice rules of every ledger step.
When the payment lands the withdrawal completes; when it fails finally (no account, no trustline …)
the amount is restored exactly once. An unclear outcome keeps it COMMITTED until the hash is found
or the envelope is proven dead (DESIGN decision 2): the request then answers 202.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from stellar_sdk import Account, TransactionBuilder, TransactionEnvelope

from orchestrator import amounts, chain_steps, ids
from orchestrator.accounts import users
from orchestrator.chain_steps import ChainContext, StepKind, StepNotFinished
from orchestrator.db import commands as commands_db
from orchestrator.db import session
from orchestrator.db import wallets as wallets_db
from orchestrator.db import withdrawals as withdrawals_db
from orchestrator.db.chain_steps import Step
from orchestrator.errors import BusinessRuleViolation, NotFound
from orchestrator.events import iso, now
from orchestrator.money import balances, ledger
from orchestrator.money.ledger import AVAILABLE, user_account
from orchestrator.payments.withdrawal_states import CreateWithdrawal, W
from orchestrator.providers.horizon import AccountState
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork

#: Payment operation codes that mean the destination cannot receive (api.md §12.1 ``details.reason``).
DESTINATION_REASONS = {"op_no_destination": "no_account", "op_no_trust": "no_trustline", "op_line_full": "line_full",
                       "op_not_authorized": "not_authorized"}
#: providers.md §2.5: a withdrawal payment may land only within this window.
TIMEOUT_SECONDS = 60


def create(uow: UnitOfWork, command: CreateWithdrawal) -> Result:
    """Debit ``available``, commit the crypto withdrawal and start its payment from the user's wallet."""
    user_id, amount = command.user_id, Decimal(command.amount)
    users.require_backing(uow.conn, user_id, users.Backing.WALLET)
    wallet = wallets_db.of_user_now(uow.conn, user_id)
    if wallet is None or wallet.status != "ACTIVE":
        raise NotFound(f"User {user_id} has no active wallet", code="WALLET_NOT_FOUND")
    if command.destination_ref == wallet.public_key:
        raise BusinessRuleViolation("A withdrawal cannot pay the user's own wallet",
                                    code="WITHDRAWAL_DESTINATION_INVALID", details={"reason": "SELF_DESTINATION"})
    withdrawal_id = ids.new_id("withdrawal")
    changes = ledger.transfer(uow, kind="withdrawal_created", amount=amount, reference=withdrawal_id,
                              source=user_account(user_id, AVAILABLE), destination=ledger.WORLD_STELLAR)
    withdrawals_db.create(uow.conn, id=withdrawal_id, user_id=user_id, amount=amount, status=W.COMMITTED,
                          committed=True, destination_type="crypto", destination_ref=command.destination_ref,
                          description=command.description)
    change, shown = changes[user_id], amounts.format_amount(amount)
    balances.emit_debited(uow, change, amount, destination="withdrawal", destination_id=withdrawal_id)
    base = {"withdrawalId": withdrawal_id, "userId": user_id, "amount": shown}
    uow.emit("withdrawal.created", withdrawal_id, {**base, "currency": "USD", "destinationType": "crypto",
                                                   "destinationRef": command.destination_ref}, user_id=user_id)
    uow.emit("withdrawal.committed", withdrawal_id, {**base, "currency": "USD",
                                                     "availableBalance": amounts.format_balance(change.available)},
             user_id=user_id)
    if uow.context.command_id:
        commands_db.start_flow(uow.conn, uow.context.command_id)
    chain_steps.create(uow, step_id=ids.new_id("step"), kind="withdrawal_payment", subject_type="withdrawal",
                       subject_id=withdrawal_id, source=wallet.public_key, signers=[wallet.public_key],
                       params={"flow": uow.context.command_id})
    return Result(201, "withdrawal", withdrawal_id, {"flow": True})


def _build_payment(ctx: ChainContext, step: Step, account: AccountState | None) -> TransactionEnvelope:
    if account is None:
        raise StepNotFinished(f"wallet {step.source_account} is not on the ledger")
    with session.reading(ctx.engine) as conn:
        withdrawal = withdrawals_db.get(conn, step.subject_id)
    assert withdrawal is not None
    fee = min(ctx.horizon.base_fee(), ctx.settings.stellar_max_fee_stroops)
    return (TransactionBuilder(Account(account.account_id, account.sequence), ctx.settings.network_passphrase,
                               base_fee=fee)
            .append_payment_op(withdrawal.destination_ref, ctx.horizon.usdc, f"{withdrawal.amount:f}")
            .set_timeout(TIMEOUT_SECONDS).build())


def _paid(uow: UnitOfWork, step: Step, record: dict[str, Any] | None) -> None:
    withdrawal = withdrawals_db.get(uow.conn, step.subject_id, for_update=True)
    assert withdrawal is not None
    tx_hash, moment = (record or {}).get("hash"), now()
    withdrawals_db.set_status(uow.conn, withdrawal.id, expected=W.COMMITTED, status=W.COMPLETED,
                              transaction_hash=tx_hash, completed_at=moment)
    uow.emit("withdrawal.completed", withdrawal.id, {
        "withdrawalId": withdrawal.id, "userId": withdrawal.user_id, "amount": amounts.format_amount(withdrawal.amount),
        "currency": "USD", "completedAt": iso(moment), "transactionHash": tx_hash}, user_id=withdrawal.user_id)
    chain_steps.finish_flow(uow, step)


def _payment_failed(uow: UnitOfWork, step: Step, reason: str) -> None:
    """The payment can never land: the withdrawal fails and the amount returns to ``available`` once."""
    withdrawal = withdrawals_db.get(uow.conn, step.subject_id, for_update=True)
    assert withdrawal is not None
    if not withdrawals_db.set_status(uow.conn, withdrawal.id, expected=W.COMMITTED, status=W.FAILED,
                                     failure_reason=reason[:500]):
        return
    changes = ledger.transfer(uow, kind="withdrawal_failed", amount=withdrawal.amount, reference=withdrawal.id,
                              source=ledger.WORLD_STELLAR, destination=user_account(withdrawal.user_id, AVAILABLE))
    code = next((c for c in DESTINATION_REASONS if c in reason), None)
    uow.emit("withdrawal.failed", withdrawal.id, {
        "withdrawalId": withdrawal.id, "userId": withdrawal.user_id, "amount": amounts.format_amount(withdrawal.amount),
        "reason": reason, "errorCode": code, "refundedToBalance": True}, user_id=withdrawal.user_id)
    balances.emit_credited(uow, changes[withdrawal.user_id], withdrawal.amount, source="withdrawal_failed",
                           source_id=withdrawal.id)
    chain_steps.finish_flow(uow, step, failed={
        "code": "WITHDRAWAL_DESTINATION_INVALID" if code else "STELLAR_NETWORK_ERROR",
        "message": f"The withdrawal payment failed: {reason}",
        "details": {"reason": DESTINATION_REASONS.get(code or "", reason),
        "withdrawalId": withdrawal.id}})


STEP_KINDS: dict[str, StepKind] = {
    "withdrawal_payment": StepKind(build=_build_payment, confirmed=_paid, failed=_payment_failed),
}
