"""Journal and balance projection rows; only orchestrator/ledger.py and check.py call this module."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, func, insert, select, update

from orchestrator.db.tables import balances, journal_entries, journal_transactions


@dataclass(frozen=True)
class BalanceRow:
    user_id: str
    available: Decimal
    reserved: Decimal


def lock_balances(conn: Connection, user_ids: Iterable[str]) -> dict[str, BalanceRow]:
    """Row-lock the balances of ``user_ids`` in id order (one global order, so no deadlocks)."""
    ordered = sorted(set(user_ids))
    rows = conn.execute(select(balances.c.user_id, balances.c.available, balances.c.reserved)
                        .where(balances.c.user_id.in_(ordered)).order_by(balances.c.user_id)
                        .with_for_update()).all()
    return {r.user_id: BalanceRow(r.user_id, r.available, r.reserved) for r in rows}


def insert_transaction(conn: Connection, *, kind: str, reference: str | None, command_id: str | None,
                       description: str | None) -> int:
    return conn.execute(insert(journal_transactions).values(
        kind=kind, reference=reference, command_id=command_id, description=description)
        .returning(journal_transactions.c.id)).scalar_one()


def insert_entries(conn: Connection, transaction_id: int,
                   entries: Sequence[tuple[str, str | None, Decimal]]) -> None:
    conn.execute(insert(journal_entries), [
        {"transaction_id": transaction_id, "account": account, "user_id": user_id, "amount": amount}
        for account, user_id, amount in entries])


def set_balance(conn: Connection, row: BalanceRow) -> None:
    conn.execute(update(balances).where(balances.c.user_id == row.user_id)
                 .values(available=row.available, reserved=row.reserved, updated_at=func.now()))


def create_balance(conn: Connection, user_id: str) -> None:
    conn.execute(insert(balances).values(user_id=user_id))


def balance_of(user_id: str) -> Select:
    return select(balances).where(balances.c.user_id == user_id)


def account_sums(conn: Connection) -> dict[str, Decimal]:
    """Sum of journal entries per account (the journal's view of every balance)."""
    rows = conn.execute(select(journal_entries.c.account, func.sum(journal_entries.c.amount))
                        .group_by(journal_entries.c.account)).all()
    return dict(rows)


def all_balances(conn: Connection) -> list[BalanceRow]:
    rows = conn.execute(select(balances.c.user_id, balances.c.available, balances.c.reserved)).all()
    return [BalanceRow(*r) for r in rows]


def unbalanced_transactions(conn: Connection) -> list[Any]:
    """Journal transactions whose entries do not sum to zero (always empty: the trigger forbids it)."""
    return list(conn.execute(select(journal_entries.c.transaction_id)
                             .group_by(journal_entries.c.transaction_id)
                             .having(func.sum(journal_entries.c.amount) != 0)).scalars())
