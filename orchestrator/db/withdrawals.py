"""Withdrawal rows; the status column is written by compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, tuple_, update

from orchestrator.db.tables import withdrawals


@dataclass(frozen=True)
class Withdrawal:
    id: str
    user_id: str
    amount: Decimal
    currency: str
    status: str
    destination_type: str
    destination_ref: str
    committed: bool
    transaction_hash: str | None
    airtm_payout_id: str | None
    fee: Decimal | None
    failure_reason: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    commit_requested: bool = False


def to_withdrawal(row: Any) -> Withdrawal:
    r = row._mapping
    return Withdrawal(*(r[name] for name in Withdrawal.__dataclass_fields__))


def by_id(withdrawal_id: str) -> Select:
    return select(withdrawals).where(withdrawals.c.id == withdrawal_id)


def get(conn: Connection, withdrawal_id: str, *, for_update: bool = False) -> Withdrawal | None:
    stmt = by_id(withdrawal_id)
    row = conn.execute(stmt.with_for_update() if for_update else stmt).first()
    return to_withdrawal(row) if row else None


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(withdrawals).values(**values))


def set_status(conn: Connection, withdrawal_id: str, *, expected: str, status: str, **values: Any) -> bool:
    result = conn.execute(update(withdrawals).where(withdrawals.c.id == withdrawal_id,
                                                    withdrawals.c.status == expected)
                          .values(status=status, updated_at=func.now(), **values))
    return bool(result.rowcount)


def page(*, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int) -> Select:
    stmt = select(withdrawals)
    for name, column in (("userId", withdrawals.c.user_id), ("status", withdrawals.c.status),
                         ("destinationType", withdrawals.c.destination_type)):
        if filters.get(name) is not None:
            stmt = stmt.where(column == filters[name])
    if after is not None:
        stmt = stmt.where(tuple_(withdrawals.c.created_at, withdrawals.c.id) < tuple_(*after))
    return stmt.order_by(withdrawals.c.created_at.desc(), withdrawals.c.id.desc()).limit(limit + 1)


def cursor_of(withdrawal_id: str) -> Select:
    return select(withdrawals.c.created_at, withdrawals.c.id).where(withdrawals.c.id == withdrawal_id)
