"""Reads of the treasury pool (DESIGN decision 25): what its escrows hold and what is being funded from it."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Connection, func, literal_column, select

from orchestrator.db import session
from orchestrator.db.tables import chain_steps, escrows, journal_entries

#: The transaction-level lock under which a fund reserves the pool's headroom: funds from the pool are
#: decided one at a time, so two concurrent funds never count the same USDC (a 64-bit constant of ours).
POOL_LOCK = 0x7472_6561_7375_7279  # "treasury"
#: An escrow the pool backs holds (or is about to hold) the pool's USDC in these states.
BACKED_STATES = ("FUNDING", "FUNDED", "RELEASING", "REFUNDING", "DISPUTED")


def lock_pool(conn: Connection) -> None:
    session.advisory_xact_lock(conn, POOL_LOCK)


def funding_by_account(conn: Connection) -> dict[str, Decimal]:
    """Per treasury account, the escrows being funded from it whose funding has not been confirmed yet:
    the USDC already promised (ix_escrows_funding answers it)."""
    rows = conn.execute(select(escrows.c.funder_account, func.sum(escrows.c.amount))
                        .where(escrows.c.status == "FUNDING", escrows.c.funding_mode == "TREASURY",
                               escrows.c.funder_account.is_not(None))
                        .group_by(escrows.c.funder_account)).all()
    return {account: Decimal(total) for account, total in rows}


def backed(conn: Connection) -> tuple[int, Decimal]:
    """How many escrows the pool backs now and what they hold (or are about to hold)."""
    count, total = conn.execute(select(func.count(), func.coalesce(func.sum(escrows.c.amount), 0))
                                .where(escrows.c.funding_mode == "TREASURY",
                                       escrows.c.status.in_(BACKED_STATES))).one()
    return int(count), Decimal(total)


def journal_sum(conn: Connection, account: str) -> Decimal:
    """The journal's balance of one of the pool's outside accounts (ix_journal_entries_pool answers it)."""
    if account not in ("platform:treasury", "platform:settlement"):  # a literal of ours, never a caller's
        raise ValueError(f"not a pool account: {account}")
    total = conn.execute(select(func.coalesce(func.sum(journal_entries.c.amount), 0))
                         .where(journal_entries.c.account == literal_column(f"'{account}'"))).scalar()
    return Decimal(total or 0)


def steps_in_flight(conn: Connection) -> bool:
    """Whether a chain step that can move the pool's USDC is running (an escrow's step or a settlement sweep):
    while one is, the ledger may be ahead of the journal for a moment."""
    return bool(conn.execute(select(func.count()).select_from(chain_steps).where(
        chain_steps.c.status.in_(("PENDING", "SIGNED")),
        (chain_steps.c.subject_type == "escrow") | (chain_steps.c.kind == "settlement_sweep"))).scalar())
