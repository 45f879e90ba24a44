"""The only module that moves money: balanced journal transactions plus the ``balances`` projection.

Every movement is a list of legs ``(account, signed amount)`` summing to zero. User accounts are
``user:<id>:available`` and ``user:<id>:reserved``; everything else (``platform:adjustment``,
``escrow:<order>``, ``world:stellar`` …) is an outside account with no projection. The projection
rows of the users involved are locked in id order, checked so nothing goes negative, and updated in
the same transaction as the journal (the database also refuses negatives and unbalanced journals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from orchestrator import amounts
from orchestrator.db import ledger as ledger_db
from orchestrator.errors import InsufficientFunds, InternalError, NotFound, ValidationFailed
from orchestrator.unit_of_work import UnitOfWork

AVAILABLE, RESERVED = "available", "reserved"
#: The counter-account of administrative operations (spec api.md §6.4, DESIGN decision 7).
ADJUSTMENT = "platform:adjustment"
#: The platform's expense for AirTM's pay-in fees: a top-up credits its user ``amount`` while the
#: enterprise account receives ``amount - airtmFee`` (providers.md §3.4), so the platform bears the fee.
AIRTM_FEES = "platform:airtm_fees"
#: The outside accounts: USDC on the Stellar ledger (deposits in, crypto withdrawals out) and the claims
#: on AirTM's enterprise account that AirTM-mode balances are (providers.md §3.1).
WORLD_STELLAR = "world:stellar"
WORLD_AIRTM = "world:airtm"

#: Balance moves of spec states.md §1.1 as data: operation -> (source bucket, destination bucket).
#: A bucket is a user's ``available``/``reserved`` or an outside account kind.
MOVES: dict[str, tuple[str, str]] = {
    "deposit": ("world", AVAILABLE),
    "reserve": (AVAILABLE, RESERVED),
    "cancel_order": (RESERVED, AVAILABLE),
    "fund_escrow": (RESERVED, "escrow"),
    "seller_credited": ("escrow", AVAILABLE),
    "buyer_credited": ("escrow", AVAILABLE),
    "withdrawal_created": (AVAILABLE, "world"),
    "withdrawal_failed": ("world", AVAILABLE),
    "withdrawal_canceled": ("world", AVAILABLE),
    "topup": ("world", AVAILABLE),
    "airtm_fee": ("airtm_fees", "world"),
    "admin_credit": ("adjustment", AVAILABLE),
    "admin_debit": (AVAILABLE, "adjustment"),
    "admin_reserve": (AVAILABLE, RESERVED),
    "admin_cancel_reservation": (RESERVED, AVAILABLE),
    "admin_deduct_reserved": (RESERVED, "adjustment"),
}


def user_account(user_id: str, bucket: str) -> str:
    return f"user:{user_id}:{bucket}"


def parse_user_account(account: str) -> tuple[str, str] | None:
    parts = account.split(":")
    if len(parts) == 3 and parts[0] == "user" and parts[2] in (AVAILABLE, RESERVED):
        return parts[1], parts[2]
    return None


@dataclass(frozen=True)
class Change:
    """One user's balance before and after a posting."""

    user_id: str
    available_before: Decimal
    reserved_before: Decimal
    available: Decimal
    reserved: Decimal
    #: The balance's ``updatedAt`` after the posting (its transaction's time).
    updated_at: datetime | None = None


def post(uow: UnitOfWork, *, kind: str, legs: Sequence[tuple[str, Decimal]], reference: str | None = None,
         description: str | None = None) -> dict[str, Change]:
    """Post one balanced journal transaction and update the projection; returns each user's change."""
    entries = [(account, amounts.quantize(amount)) for account, amount in legs if amount != 0]
    if not entries or sum(amount for _, amount in entries) != 0:
        raise InternalError(f"journal transaction {kind} does not balance")
    users = {parsed[0] for account, _ in entries if (parsed := parse_user_account(account))}
    locked = ledger_db.lock_balances(uow.conn, users)
    missing = users - locked.keys()
    if missing:
        raise NotFound(f"User {sorted(missing)[0]} not found", code="USER_NOT_FOUND")
    changes = _apply(locked, entries)
    txn = ledger_db.insert_transaction(uow.conn, kind=kind, reference=reference,
                                       command_id=uow.context.command_id, description=description)
    ledger_db.insert_entries(uow.conn, txn, [
        (account, parsed[0] if (parsed := parse_user_account(account)) else None, amount)
        for account, amount in entries])
    for change in changes.values():
        ledger_db.set_balance(uow.conn, ledger_db.BalanceRow(change.user_id, change.available,
                                                             change.reserved))
    return changes


def transfer(uow: UnitOfWork, *, kind: str, amount: Decimal, source: str, destination: str,
             reference: str | None = None, description: str | None = None) -> dict[str, Change]:
    """Move ``amount`` from one account to another (the common two-leg posting)."""
    if amount <= 0:
        raise InternalError("a transfer moves a positive amount")
    return post(uow, kind=kind, legs=[(source, -amount), (destination, amount)], reference=reference,
                description=description)


def open_balance(uow: UnitOfWork, user_id: str) -> None:
    """Create a user's zero balance (the projection row every posting locks)."""
    ledger_db.create_balance(uow.conn, user_id)


def _apply(locked: dict[str, ledger_db.BalanceRow],
           entries: Sequence[tuple[str, Decimal]]) -> dict[str, Change]:
    state = {uid: [row.available, row.reserved] for uid, row in locked.items()}
    for account, amount in entries:
        parsed = parse_user_account(account)
        if parsed:
            state[parsed[0]][0 if parsed[1] == AVAILABLE else 1] += amount
    for uid, (available, reserved) in state.items():
        before = locked[uid]
        if available < 0:
            requested = before.available - available
            raise InsufficientFunds(details={
                "available": amounts.format_balance(before.available),
                "requested": amounts.format_balance(requested), "currency": "USD"})
        if reserved < 0:
            raise InsufficientFunds(
                "User reserved balance is less than the requested amount",
                details={"balance": "reserved", "reserved": amounts.format_balance(before.reserved),
                         "requested": amounts.format_balance(before.reserved - reserved), "currency": "USD"})
        if max(available, reserved) > amounts.MAX_BALANCE:
            # the book's columns cannot hold it: refuse it as the request's error, not a database failure
            # retried until the command gives up (api.md §1.4: at most 13 integer digits)
            raise ValidationFailed.field("amount", "AMOUNT_OUT_OF_RANGE",
                                         "the balance would exceed the largest amount the book holds",
                                         max=amounts.format_balance(amounts.MAX_BALANCE))
    return {uid: Change(uid, locked[uid].available, locked[uid].reserved, av, res, locked[uid].at)
            for uid, (av, res) in state.items()}
