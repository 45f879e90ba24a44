"""Reads that compare the book with the ledger (``offerhub check``, reconciliation)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Numeric, Select, Text, func, literal, select

from orchestrator.db.tables import (
    balances,
    chain_steps,
    deposits,
    escrows,
    journal_entries,
    orders,
    reconciliation_reports,
    topups,
    wallets,
    withdrawals,
)


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
            .where(wallets.c.purpose.is_(None))  # the pool's accounts hold no user's money: `check` compares them
            .order_by(wallets.c.user_id))
    if user_ids is not None:
        stmt = stmt.where(wallets.c.user_id.in_(list(user_ids)))
    return [WalletBook(*row) for row in conn.execute(stmt).all()]


# --- the reconciliation report (issue 10) -------------------------------------------------------------

@dataclass(frozen=True)
class EscrowBook:
    """One escrow, what the book holds in its ``escrow:<order>`` account, and whether a step is running."""

    escrow_id: str
    order_id: str
    contract_id: str | None
    status: str
    amount: Decimal
    book: Decimal
    in_flight: bool  # a chain step for it is pending or signed: the ledger may be ahead of the book


def escrow_books(conn: Connection) -> list[EscrowBook]:
    held = (select(journal_entries.c.account, func.sum(journal_entries.c.amount).label("total"))
            .where(journal_entries.c.account.like("escrow:%")).group_by(journal_entries.c.account).subquery())
    running = (select(chain_steps.c.subject_id).where(chain_steps.c.subject_type == "escrow",
                                                      chain_steps.c.status.in_(("PENDING", "SIGNED"))))
    stmt = (select(escrows.c.id, escrows.c.order_id, escrows.c.trustless_contract_id, escrows.c.status,
                   escrows.c.amount, func.coalesce(held.c.total, 0), escrows.c.id.in_(running))
            .select_from(escrows.outerjoin(held, held.c.account == func.concat("escrow:", escrows.c.order_id)))
            .where(escrows.c.status != "DISCARDED").order_by(escrows.c.id))
    return [EscrowBook(*row) for row in conn.execute(stmt).all()]


def orphan_escrow_accounts(conn: Connection) -> list[tuple[str, Decimal]]:
    """``escrow:<order>`` accounts holding money although the order has no live escrow."""
    live = select(func.concat("escrow:", escrows.c.order_id)).where(escrows.c.status != "DISCARDED")
    rows = conn.execute(select(journal_entries.c.account, func.sum(journal_entries.c.amount))
                        .where(journal_entries.c.account.like("escrow:%"), journal_entries.c.account.not_in(live))
                        .group_by(journal_entries.c.account)
                        .having(func.sum(journal_entries.c.amount) != 0)).all()
    return [(account, total) for account, total in rows]


def account_total(conn: Connection, account: str) -> Decimal:
    return conn.execute(select(func.coalesce(func.sum(journal_entries.c.amount), 0))
                        .where(journal_entries.c.account == account)).scalar_one()


def settled_fees(conn: Connection) -> tuple[Decimal, Decimal]:
    """Sum of ``trustlessFee`` and ``platformFee`` over every settled order (decision 1)."""
    fee = orders.c.settlement
    row = conn.execute(select(func.coalesce(func.sum(fee["trustlessFee"].astext.cast(Numeric)), 0),
                              func.coalesce(func.sum(fee["platformFee"].astext.cast(Numeric)), 0))
                       .where(fee.is_not(None))).one()
    return Decimal(row[0]), Decimal(row[1])


def users_in_flight(conn: Connection) -> set[str]:
    """Users whose wallet has a ledger step running or a deposit not yet credited: their book may lag."""
    steps = (select(wallets.c.user_id).join(chain_steps, chain_steps.c.source_account == wallets.c.public_key)
             .where(chain_steps.c.status.in_(("PENDING", "SIGNED"))))
    pending = select(deposits.c.user_id).where(deposits.c.status == "PENDING")
    return set(conn.execute(steps.union(pending)).scalars())


def insert_report(conn: Connection, **values: Any) -> None:
    conn.execute(reconciliation_reports.insert().values(**values))


def latest_report_at(conn: Connection) -> datetime | None:
    return conn.execute(select(func.max(reconciliation_reports.c.created_at))).scalar()


def report(report_id: str) -> Select:
    return select(reconciliation_reports).where(reconciliation_reports.c.id == report_id)


def airtm_items(conn: Connection, since: datetime | None, limit: int) -> list[tuple[str, str, str, str]]:
    """(kind, id, status, AirTM id) of the top-ups and AirTM withdrawals with an AirTM record, changed since
    ``since`` (all when None), newest first, at most ``limit``."""
    tops = select(literal("topup", Text).label("kind"), topups.c.id, topups.c.status,
                  topups.c.airtm_payin_id.label("ref"), topups.c.updated_at).where(topups.c.airtm_payin_id.is_not(None))
    outs = select(literal("withdrawal", Text).label("kind"), withdrawals.c.id, withdrawals.c.status,
                  withdrawals.c.airtm_payout_id.label("ref"), withdrawals.c.updated_at).where(
        withdrawals.c.airtm_payout_id.is_not(None))
    if since is not None:
        tops, outs = tops.where(topups.c.updated_at >= since), outs.where(withdrawals.c.updated_at >= since)
    both = tops.union_all(outs).subquery()
    rows = conn.execute(select(both.c.kind, both.c.id, both.c.status, both.c.ref)
                        .order_by(both.c.updated_at.desc()).limit(limit)).all()
    return [(str(k), str(i), str(s), str(r)) for k, i, s, r in rows]
