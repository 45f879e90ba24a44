"""Deposit rows: one per ledger operation that paid USDC into a wallet, credited exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from orchestrator.db.tables import deposits, escrows


@dataclass(frozen=True)
class Deposit:
    operation_id: str
    tx_hash: str
    op_index: int
    wallet_id: str
    user_id: str
    amount: Decimal
    from_account: str | None
    source: str
    status: str
    change_index: int | None = None


def to_deposit(row: Any) -> Deposit:
    r = row._mapping
    return Deposit(r["operation_id"], r["tx_hash"], r["op_index"], r["wallet_id"], r["user_id"], r["amount"],
                   r["from_account"], r["source"], r["status"], r["change_index"])


_RECORD = (insert(deposits).on_conflict_do_nothing(index_elements=["operation_id"])
           .returning(deposits.c.operation_id))


def record(conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
    """Insert deposits not seen before; returns the operation ids that are new."""
    if not rows:
        return []
    statement = _RECORD  # one cached statement, executed many (SQLAlchemy batches it as insertmanyvalues)
    return [row.operation_id for row in conn.execute(statement, rows) if row is not None]


def lock_many(conn: Connection, operation_ids: list[str]) -> list[Deposit]:
    """The pending deposits among ``operation_ids``, locked, in user order (the global lock order)."""
    rows = conn.execute(select(deposits).where(deposits.c.operation_id.in_(operation_ids),
                                               deposits.c.status == "PENDING")
                        .order_by(deposits.c.user_id, deposits.c.operation_id).with_for_update()).all()
    return [to_deposit(r) for r in rows]


def mark_credited(conn: Connection, operation_id: str) -> None:
    conn.execute(update(deposits).where(deposits.c.operation_id == operation_id)
                 .values(status="CREDITED", credited_at=func.now()))


def stale_pending(conn: Connection, *, older_than: datetime, limit: int = 500) -> list[str]:
    return list(conn.execute(select(deposits.c.operation_id).where(
        deposits.c.status == "PENDING", deposits.c.created_at < older_than)
        .order_by(deposits.c.created_at).limit(limit)).scalars())


def is_escrow_contract(conn: Connection, address: str) -> bool:
    """Whether a contract id is one of our escrows (its transfers are payouts, not deposits)."""
    return conn.execute(select(escrows.c.id).where(escrows.c.trustless_contract_id == address).limit(1)).first() \
        is not None


def open_escrow_contracts(conn: Connection) -> list[Any]:
    """(escrow id, order id, contract id, status) of every escrow whose contract still holds or may hold
    money: the contracts a network reset takes away (``offerhub check`` lists them, DESIGN decision 35)."""
    return list(conn.execute(select(escrows.c.id, escrows.c.order_id, escrows.c.trustless_contract_id,
                                    escrows.c.status)
                             .where(escrows.c.trustless_contract_id.is_not(None),
                                    escrows.c.status.not_in(("RELEASED", "REFUNDED")))).all())
