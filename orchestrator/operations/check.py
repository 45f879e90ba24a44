"""Invariants verified by ``offerhub check`` and the tests.

The book must be internally consistent (the projection equals the journal, every journal transaction
sums to zero, nothing is negative) and, in crypto mode, agree with the ledger: by DESIGN decision 7 a
user's ``available + reserved`` equals their wallet's USDC on the ledger plus their net postings to
the adjustment account, because administrative credits and debits change the book without touching
the ledger. Every difference is reported with the user, the wallet and the amounts, so an operator
can act on it; a wallet whose account is missing on the ledger is a difference too, except a wallet
still being created (``CREATED``, not yet activated on the ledger) whose book is zero: that is every new
user for a moment, and counting it would show false differences while wallets are being created.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator.amounts import format_balance
from orchestrator.db import chain_steps as steps_db
from orchestrator.db import deposits as deposits_db
from orchestrator.db import ledger as ledger_db
from orchestrator.db import operations as operations_db
from orchestrator.db import reconciliation as reconciliation_db
from orchestrator.db import session
from orchestrator.money.ledger import ADJUSTMENT, AVAILABLE, RESERVED, user_account
from orchestrator.providers.horizon import Horizon

#: Book and ledger may differ by this much before a user's balance check calls it a discrepancy (api.md §6.2).
TOLERANCE = Decimal("1.00")


def unexplained(book: Decimal, ledger: Decimal, adjustments: Decimal) -> Decimal:
    """DESIGN decision 7's one formula: the book (``available + reserved``) minus what the wallet's ledger USDC
    and the user's net administrative postings explain; positive when the book holds more."""
    return book - (ledger + adjustments)


@dataclass(frozen=True)
class Comparison:
    """One user's book against its wallet's ledger USDC, as the balance check reads them (``None``: unknown,
    an unreachable ledger or a user without a wallet)."""

    book: Decimal
    adjustments: Decimal | None
    ledger: Decimal | None

    @property
    def difference(self) -> Decimal | None:
        if self.ledger is None or self.adjustments is None:
            return None
        return unexplained(self.book, self.ledger, self.adjustments)

    @property
    def discrepancy(self) -> bool:
        return self.difference is not None and abs(self.difference) > TOLERANCE

    @property
    def verified(self) -> bool:
        return self.ledger is not None and not self.discrepancy


#: A wallet the product created whose activation has not landed on the ledger yet.
NOT_YET_ACTIVATED = "CREATED"


@dataclass(frozen=True)
class Difference:
    """A wallet whose book balance is not its ledger USDC plus its administrative postings."""

    user_id: str
    public_key: str
    wallet_status: str
    available: Decimal
    reserved: Decimal
    adjustments: Decimal
    ledger: Decimal | None  # None: the account does not exist on the ledger

    @property
    def book(self) -> Decimal:
        return self.available + self.reserved

    @property
    def amount(self) -> Decimal:
        """Book minus what the ledger justifies: positive when the book holds more than the wallet."""
        return unexplained(self.book, self.ledger or Decimal(0), self.adjustments)

    def describe(self) -> str:
        ledger = "missing on the ledger" if self.ledger is None else f"ledger USDC {format_balance(self.ledger)}"
        sign = "+" if self.amount > 0 else "-"
        return (f"user {self.user_id} wallet {self.public_key} ({self.wallet_status}): book "
                f"{format_balance(self.book)} (available {format_balance(self.available)}, reserved "
                f"{format_balance(self.reserved)}) != {ledger} + adjustments {format_balance(self.adjustments)}"
                f" (difference {sign}{format_balance(abs(self.amount))})")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    wallets_compared: int = 0
    #: Payouts failing again and again after one of their transactions landed (still being retried).
    stuck: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.differences and not self.stuck


def _after_reset(conn: Any, report: Report) -> None:
    """After a detected network reset (DESIGN decision 35), every open escrow's contract is gone with the old
    chain: each is listed for an operator's decision (wallets missing from the new chain show up as
    differences below). Nothing is adjusted."""
    row = conn.execute(operations_db.figures("network")).first()
    if row is None or row.figures.get("status") != "reset_detected":
        return
    report.problems.append(f"the Stellar network was reset (detected {row.figures.get('detectedAt')}): balances are "
                           "kept; wallets are re-activated when next needed")
    for escrow_id, order_id, contract, status in deposits_db.open_escrow_contracts(conn):
        report.problems.append(f"escrow {escrow_id} of order {order_id} ({status}, contract {contract}) was on the "
                               "chain before the reset and is missing from the new chain")


def verify(engine: Any, horizon: Horizon | None = None, *, user_ids: Collection[str] | None = None,
           stuck_after: int = 5) -> Report:
    """The book's own invariants; with ``horizon``, also each wallet (of ``user_ids``, or all) against the ledger;
    and every payout stuck after ``stuck_after`` failures in a row."""
    report = Report()
    with session.transaction(engine) as conn:
        _verify_book(conn, report)
        _after_reset(conn, report)
        report.stuck = [f"order {s.order_id}: {s.kind} failed {s.retries} times in a row, retrying (step {s.id} "
                        f"waiting since {s.since:%Y-%m-%d %H:%M:%S}): {s.last_error or ''}"
                        for s in steps_db.stuck(conn, min_retries=stuck_after)]
        books = (reconciliation_db.wallet_books(conn, adjustment_account=ADJUSTMENT, user_ids=user_ids)
                 if horizon is not None else [])
    # the ledger is read after the transaction: no database transaction stays open across HTTP calls
    if horizon is not None:
        compare_with_ledger(books, horizon, report)
    return report


def _verify_book(conn: Any, report: Report) -> None:
    """The projection equals the journal, every journal transaction sums to zero, nothing is negative."""
    sums = ledger_db.account_sums(conn)
    for txn in ledger_db.unbalanced_transactions(conn):
        report.problems.append(f"journal transaction {txn} does not sum to zero")
    for row in ledger_db.all_balances(conn):
        for bucket, value in ((AVAILABLE, row.available), (RESERVED, row.reserved)):
            journal = sums.get(user_account(row.user_id, bucket), Decimal(0))
            if journal != value:
                report.problems.append(f"{row.user_id} {bucket}: projection {value} != journal {journal}")
            if value < 0:
                report.problems.append(f"{row.user_id} {bucket} is negative: {value}")
    total = sum(sums.values(), Decimal(0))
    if total != 0:
        report.problems.append(f"the journal sums to {total}, not zero")


def compare_with_ledger(books: list[reconciliation_db.WalletBook], horizon: Horizon, report: Report) -> None:
    """DESIGN decision 7 for each wallet: ``available + reserved == ledger USDC + net adjustments``."""
    for book in books:
        try:
            account = horizon.account(book.public_key)
        except Exception as error:  # an unreadable ledger is a problem to report, not a crash mid-report
            report.problems.append(f"user {book.user_id} wallet {book.public_key}: the ledger could not be read "
                                   f"({type(error).__name__})")
            continue
        report.wallets_compared += 1
        ledger = None if account is None else (account.usdc or Decimal(0))
        difference = Difference(book.user_id, book.public_key, book.status, book.available, book.reserved,
                                book.adjustments, ledger)
        if account is None and book.status == NOT_YET_ACTIVATED and difference.book == 0:
            continue  # compared: its account simply does not exist yet, and the book owes it nothing
        if account is None or difference.amount != 0:
            report.differences.append(difference)


def verify_pool(engine: Any, horizon: Horizon, report: Report) -> Any:
    """The treasury pool's ledger USDC against the journal's pool accounts and the operator's recorded float
    (``treasury.PoolBook``), to the stroop; a comparison made while a pool step runs is not a problem."""
    from orchestrator.accounts import treasury

    pool = treasury.read_pool(engine, horizon)
    report.problems.extend(pool.errors)
    if pool.difference and not pool.in_flight:
        report.problems.append(f"the treasury pool's float is {pool.operator_float:.7f} USDC, not the recorded "
                               f"{pool.recorded:.7f} (difference {pool.difference:+.7f}): USDC moved without the "
                               f"book, or the operator changed the float without recording it")
    return pool


def verify_enterprise(engine: Any, enterprise: Any, report: Report) -> None:
    """The AirTM enterprise's operator funds (``airtm_treasury.Treasury.operator_funds``) against the recorded
    figure, to the cent."""
    from orchestrator.accounts import treasury

    recorded = treasury.recorded_enterprise_float(engine)
    if recorded is not None and enterprise.operator_funds != recorded:
        funds = enterprise.operator_funds
        report.problems.append(f"the AirTM enterprise holds operator funds of {format_balance(funds)}"
                               f" USD, not the recorded {format_balance(recorded)} (difference "
                               f"{format_balance(enterprise.operator_funds - recorded)}): money moved at AirTM "
                               f"without the book, or the operator changed its funds without recording them")
