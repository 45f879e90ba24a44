"""A user's journal lines for a statement: sums before a moment, and each transaction in a period."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from orchestrator.db.tables import balances, journal_entries, journal_transactions


def _bucket_sums() -> tuple[Any, Any]:
    available = func.coalesce(func.sum(case((journal_entries.c.account.like("%:available"), journal_entries.c.amount),
                                            else_=0)), 0)
    reserved = func.coalesce(func.sum(case((journal_entries.c.account.like("%:reserved"), journal_entries.c.amount),
                                           else_=0)), 0)
    return available.label("available"), reserved.label("reserved")


def sums_before(conn: Connection, user_id: str, moment: datetime | None) -> Any:
    """The user's (available, reserved) from every journal line before ``moment`` (None: nothing before)."""
    available, reserved = _bucket_sums()
    stmt = (select(available, reserved)
            .select_from(journal_entries.join(journal_transactions,
                                              journal_transactions.c.id == journal_entries.c.transaction_id))
            .where(journal_entries.c.user_id == user_id))
    if moment is None:
        stmt = stmt.where(journal_entries.c.id.is_(None))
    else:
        stmt = stmt.where(journal_transactions.c.created_at < moment)
    return conn.execute(stmt).one()


def movements(conn: Connection, user_id: str, since: datetime | None, until: datetime | None) -> Sequence[Any]:
    """Each journal transaction touching the user in [since, until), with the user's change per bucket, in
    posting order (a user's postings are serialised by the lock on their balance row)."""
    available, reserved = _bucket_sums()
    conditions = [journal_entries.c.user_id == user_id]
    if since is not None:
        conditions.append(journal_transactions.c.created_at >= since)
    if until is not None:
        conditions.append(journal_transactions.c.created_at < until)
    stmt = (select(journal_transactions.c.id, journal_transactions.c.created_at, journal_transactions.c.kind,
                   journal_transactions.c.reference, journal_transactions.c.description, available, reserved)
            .select_from(journal_entries.join(journal_transactions,
                                              journal_transactions.c.id == journal_entries.c.transaction_id))
            .where(and_(*conditions))
            .group_by(journal_transactions.c.id)
            .order_by(journal_transactions.c.id))
    return conn.execute(stmt).all()


def current_balance(conn: Connection, user_id: str) -> Any:
    return conn.execute(select(balances.c.available, balances.c.reserved)
                        .where(balances.c.user_id == user_id)).one_or_none()
