"""Reads that compare the book with the ledger (``offerhub check``, reconciliation)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Connection, func, select

from orchestrator.db.tables import balances, journal_entries, wallets


@dataclass(frozen=True)
class WalletBook:
    """One wallet and what the book says its user holds."""

    user_id: str
    public_key: str
    status: str
    available: Decimal
    reserved: Decimal
    adjustments: Decimal  # net amount the user received through the adjustment account


def wallet_books(conn: Connection, *, adjustment_account: str,
                 user_ids: Collection[str] | None = None) -> list[WalletBook]:
    """Every wallet (or those of ``user_ids``) with its user's balance and net administrative postings.

    A user's administrative postings are their own legs in the journal transactions that touch
    ``adjustment_account`` (the adjustment leg itself names no user).
    """
    adjusted = select(journal_entries.c.transaction_id).where(journal_entries.c.account == adjustment_account)
    adjustments = (select(journal_entries.c.user_id, func.sum(journal_entries.c.amount).label("total"))
                   .where(journal_entries.c.user_id.is_not(None), journal_entries.c.transaction_id.in_(adjusted))
                   .group_by(journal_entries.c.user_id).subquery())
    stmt = (select(wallets.c.user_id, wallets.c.public_key, wallets.c.status, balances.c.available,
                   balances.c.reserved, func.coalesce(adjustments.c.total, 0))
            .select_from(wallets.join(balances, balances.c.user_id == wallets.c.user_id)
                         .outerjoin(adjustments, adjustments.c.user_id == wallets.c.user_id))
            .order_by(wallets.c.user_id))
    if user_ids is not None:
        stmt = stmt.where(wallets.c.user_id.in_(list(user_ids)))
    return [WalletBook(*row) for row in conn.execute(stmt).all()]
