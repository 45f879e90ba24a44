"""Deposits: which ledger payments are USDC paid into a wallet (providers.md §2.12), credited once each.

The monitor records each detected payment as a pending deposit in the same transaction that moves its
stored cursor (DESIGN decision 6); the credit actor completes the row; the scheduler republishes
pending rows whose message was lost. The row's primary key is the operation id, so a payment seen
twice (a restarted stream, two monitors, a reconciliation) is recorded once and credited once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator import balances, ledger
from orchestrator.db import cursors as cursors_db
from orchestrator.db import deposits as deposits_db
from orchestrator.db import session
from orchestrator.unit_of_work import UnitOfWork

DEPOSIT_TYPES = frozenset({"payment", "path_payment_strict_receive", "path_payment_strict_send"})
#: The outside account deposits come from in the journal.
WORLD_STELLAR = "world:stellar"
STREAM_CURSOR = "horizon:payments"


@dataclass(frozen=True)
class Usdc:
    code: str
    issuer: str


def classify(record: dict[str, Any], usdc: Usdc, wallet_of: Callable[[str], tuple[str, str] | None],
             *, source: str = "stellar_deposit") -> dict[str, Any] | None:
    """The deposit row for a payment record into one of our wallets, or ``None`` when it is not one."""
    if record.get("type") not in DEPOSIT_TYPES or not record.get("transaction_successful", True):
        return None
    if record.get("asset_type") not in ("credit_alphanum4", "credit_alphanum12"):
        return None
    if record.get("asset_code") != usdc.code or record.get("asset_issuer") != usdc.issuer:
        return None
    to, sender = record.get("to"), record.get("from")
    if not to or to == sender:
        return None
    wallet = wallet_of(to)
    if wallet is None:
        return None
    operation_id = str(record["id"])
    return {"operation_id": operation_id, "tx_hash": record["transaction_hash"],
            "op_index": (int(operation_id) & 0xFFF) - 1, "wallet_id": wallet[0], "user_id": wallet[1],
            "amount": Decimal(record["amount"]), "from_account": sender, "source": source}


def record_batch(engine: Any, rows: list[dict[str, Any]], *, cursor_name: str | None, cursor: str | None) -> list[str]:
    """Record deposits and move the cursor past them in one transaction; returns the new operation ids."""
    with session.transaction(engine) as conn:
        new = deposits_db.record(conn, rows)
        if cursor_name and cursor:
            cursors_db.put(conn, cursor_name, cursor)
        conn.commit()
    return new


def credit(uow: UnitOfWork, operation_ids: list[str]) -> int:
    """Credit recorded deposits to their users' available balances, each exactly once; returns how
    many were still pending. Users are locked in id order, so concurrent batches cannot deadlock."""
    pending = deposits_db.lock_many(uow.conn, operation_ids)
    for deposit in pending:
        _credit_one(uow, deposit)
    return len(pending)


def _credit_one(uow: UnitOfWork, deposit: deposits_db.Deposit) -> None:
    changes = ledger.transfer(uow, kind="deposit", amount=deposit.amount, source=WORLD_STELLAR,
                              destination=ledger.user_account(deposit.user_id, ledger.AVAILABLE),
                              reference=f"{deposit.tx_hash}:{deposit.op_index}")
    balances.emit_credited(uow, changes[deposit.user_id], deposit.amount, source=deposit.source,
                           transaction_hash=deposit.tx_hash)
    deposits_db.mark_credited(uow.conn, deposit.operation_id)
