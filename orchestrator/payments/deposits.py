"""Deposits: which ledger payments are USDC paid into a wallet (providers.md §2.12), credited once each.

The monitor records each detected payment as a pending deposit in the same transaction that moves its
stored cursor (DESIGN decision 6); the credit actor completes the row; the scheduler republishes
pending rows whose message was lost. The row's key is the transaction hash and operation index
(plus the change index of a contract transfer), so a payment seen twice (a restarted stream, two
monitors, a reconciliation, a chain read again after a network reset) is recorded once and credited once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orchestrator.db import cursors as cursors_db
from orchestrator.db import deposits as deposits_db
from orchestrator.db import session
from orchestrator.money import balances, ledger
from orchestrator.unit_of_work import UnitOfWork

DEPOSIT_TYPES = frozenset({"payment", "path_payment_strict_receive", "path_payment_strict_send"})
#: SAC events that add to the ``to`` address (stellar/go ``processors/operations_processor.go``, ``IsPayment``).
CONTRACT_CREDITS = frozenset({"transfer", "mint"})
STREAM_CURSOR = "horizon:payments"


@dataclass(frozen=True)
class Usdc:
    code: str
    issuer: str


def classify(record: dict[str, Any], usdc: Usdc, wallet_of: Callable[[str], tuple[str, str] | None],
             *, source: str = "stellar_deposit",
             is_escrow: Callable[[str], bool] = lambda _: False) -> dict[str, Any] | None:
    """The first deposit row a record holds, or ``None`` (see ``deposit_rows``)."""
    rows = deposit_rows(record, usdc, wallet_of, source=source, is_escrow=is_escrow)
    return rows[0] if rows else None


def deposit_rows(record: dict[str, Any], usdc: Usdc, wallet_of: Callable[[str], tuple[str, str] | None],
                 *, source: str = "stellar_deposit",
                 is_escrow: Callable[[str], bool] = lambda _: False) -> list[dict[str, Any]]:
    """The deposit rows for USDC a record pays into our wallets: a payment or path payment (providers.md
    §2.12), or each ``asset_balance_changes`` entry of an ``invoke_host_function`` record that moves USDC
    into a wallet from anything but one of our escrows (DESIGN decision 23; the record shape is Horizon's
    ``AssetContractBalanceChange``, stellar/go ``protocols/horizon/operations/main.go``). Each row is keyed
    by transaction hash and operation index (and change index), never by the TOID alone: ledgers start
    over after a network reset, TOIDs with them."""
    if not record.get("transaction_successful", True):
        return []
    operation_id = str(record["id"])
    op_index = (int(operation_id) & 0xFFF) - 1
    base = {"tx_hash": record["transaction_hash"], "op_index": op_index, "paging_token": operation_id,
            "source": source}
    if record.get("type") == "invoke_host_function":
        rows = []
        for index, change in enumerate(record.get("asset_balance_changes") or ()):
            if change.get("type") not in CONTRACT_CREDITS or not _is_usdc(change, usdc):
                continue
            to, sender = change.get("to"), change.get("from")
            if not to or to == sender or (sender and is_escrow(sender)) or (wallet := wallet_of(to)) is None:
                continue
            rows.append({**base, "operation_id": f"{record['transaction_hash']}:{op_index}:{index}",
                         "change_index": index, "wallet_id": wallet[0], "user_id": wallet[1],
                         "amount": Decimal(change["amount"]), "from_account": sender})
        return rows
    if record.get("type") not in DEPOSIT_TYPES or not _is_usdc(record, usdc):
        return []
    to, sender = record.get("to"), record.get("from")
    if not to or to == sender or (wallet := wallet_of(to)) is None:
        return []
    return [{**base, "operation_id": f"{record['transaction_hash']}:{op_index}", "change_index": None,
             "wallet_id": wallet[0], "user_id": wallet[1], "amount": Decimal(record["amount"]),
             "from_account": sender}]


def _is_usdc(fields: dict[str, Any], usdc: Usdc) -> bool:
    return (fields.get("asset_type") in ("credit_alphanum4", "credit_alphanum12")
            and fields.get("asset_code") == usdc.code and fields.get("asset_issuer") == usdc.issuer)


def record_batch(engine: Any, rows: list[dict[str, Any]], *, cursor_name: str | None, cursor: str | None,
                 anchor: tuple[str, str] | None = None) -> list[str]:
    """Record deposits and move the cursor past them in one transaction (with ``anchor``, a second named
    value such as the transaction hash at the cursor); returns the keys of the new deposits."""
    with session.transaction(engine) as conn:
        new = deposits_db.record(conn, rows)
        if cursor_name and cursor:
            cursors_db.put(conn, cursor_name, cursor)
        if anchor is not None:
            cursors_db.put(conn, *anchor)
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
    changes = ledger.transfer(uow, kind="deposit", amount=deposit.amount, source=ledger.WORLD_STELLAR,
                              destination=ledger.user_account(deposit.user_id, ledger.AVAILABLE),
                              reference=deposit.operation_id)
    balances.emit_credited(uow, changes[deposit.user_id], deposit.amount, source=deposit.source,
                           transaction_hash=deposit.tx_hash)
    deposits_db.mark_credited(uow.conn, deposit.operation_id)
