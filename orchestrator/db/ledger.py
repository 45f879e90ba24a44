"""Journal and balance projection rows; only orchestrator/money/ledger.py and check.py call this module."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, Connection, Select, String, any_, bindparam, func, insert, select, update

from orchestrator.db.prepared import Query, insert_of
from orchestrator.db.tables import balances, journal_entries, journal_transactions


@dataclass(frozen=True)
class BalanceRow:
    user_id: str
    available: Decimal
    reserved: Decimal
    #: ``lock_balances`` only: the locking transaction's ``now()``, which a posting in it writes to
    #: ``balances.updated_at``: the balance's ``updatedAt`` once that transaction commits.
    at: datetime | None = None


# Every posting runs these: compiled once, executed straight on psycopg (``Query.run``, issue 16).
_LOCK_BALANCES = Query(
    select(balances.c.user_id, balances.c.available, balances.c.reserved, func.now().label("at"))
    .where(balances.c.user_id == any_(bindparam("user_ids", type_=ARRAY(String))))
    .order_by(balances.c.user_id).with_for_update())
_INSERT_TRANSACTION = insert_of(journal_transactions, ("kind", "reference", "command_id", "description"),
                                journal_transactions.c.id)
_INSERT_ENTRIES = insert_of(journal_entries, ("transaction_id", "account", "user_id", "amount"))
_SET_BALANCE = Query(update(balances).where(balances.c.user_id == bindparam("balance_user_id"))
                     .values(available=bindparam("new_available"), reserved=bindparam("new_reserved"),
                             updated_at=func.now()))


def lock_balances(conn: Connection, user_ids: Iterable[str]) -> dict[str, BalanceRow]:
    """Row-lock the balances of ``user_ids`` in id order (one global order, so no deadlocks)."""
    rows = _LOCK_BALANCES.run(conn, user_ids=sorted(set(user_ids))).fetchall()
    return {r.user_id: BalanceRow(r.user_id, r.available, r.reserved, r.at) for r in rows}


def insert_transaction(conn: Connection, *, kind: str, reference: str | None, command_id: str | None,
                       description: str | None) -> int:
    row = _INSERT_TRANSACTION.run(conn, kind=kind, reference=reference, command_id=command_id,
                                  description=description).fetchone()
    assert row is not None  # RETURNING of an INSERT without a condition
    return int(row.id)


def insert_entries(conn: Connection, transaction_id: int,
                   entries: Sequence[tuple[str, str | None, Decimal]]) -> None:
    _INSERT_ENTRIES.run_many(conn, [
        {"transaction_id": transaction_id, "account": account, "user_id": user_id, "amount": amount}
        for account, user_id, amount in entries])


def set_balance(conn: Connection, row: BalanceRow) -> None:
    _SET_BALANCE.run(conn, balance_user_id=row.user_id, new_available=row.available, new_reserved=row.reserved)


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
