"""The reconciliation report: the book against the ledger (and AirTM), every difference written down.

Compared, each with the amounts on both sides:

- the book's own invariants (``check.verify``: projection = journal, every transaction sums to zero);
- each wallet (the platform's too): ``available + reserved = ledger USDC + net adjustments`` (decision 7);
- each live escrow: its ``escrow:<order>`` account against the escrow's amount (FUNDED and DISPUTED hold
  it, every other state holds nothing) and, for FUNDED/DISPUTED, against the contract's balance (T11);
- the Trustless Work fee account against the fees recorded on settled orders;
- AirTM: not compared yet (``orchestrator/providers/airtm.py`` had not landed); the summary says so.

A wallet or escrow with a ledger step running (or a deposit not yet credited) may legitimately be ahead
of the book for a moment: it is listed under ``pending``, not as a difference. Differences raise
``reconciliation.differences_found`` (and so its audit entry); every run is stored, with or without.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator import check, ids, money
from orchestrator.db import reconciliation as reconciliation_db
from orchestrator.db import session
from orchestrator.escrows import ESCROW_ACCOUNT, TRUSTLESS_FEES
from orchestrator.events import now
from orchestrator.ledger import ADJUSTMENT
from orchestrator.unit_of_work import Context, UnitOfWork

log = logging.getLogger(__name__)
#: Escrow states in which the contract holds the escrow's amount.
HOLDING = frozenset({"FUNDED", "DISPUTED"})


@dataclass
class Report:
    id: str
    trigger: str
    differences: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.differences and not self.problems

    @property
    def status(self) -> str:
        return "OK" if self.ok else "DIFFERENCES"


def _show(value: Decimal | None) -> str | None:
    return None if value is None else money.format_balance(value)


def providers(settings: Any) -> tuple[Any, Any]:
    """The Horizon and Trustless Work clients a reconciliation reads (none in AirTM mode: no wallets)."""
    if settings.payment_provider != "crypto":
        return None, None
    from orchestrator.providers.horizon import Horizon
    from orchestrator.providers.trustless import TrustlessClient

    budget = None
    if settings.trustless_requests_per_minute > 0:  # the budget every process shares (decision 14)
        import redis

        from orchestrator.providers.rate_budget import RateBudget
        budget = RateBudget(redis.Redis.from_url(settings.redis_url), settings.redis_prefix,
                            per_minute=settings.trustless_requests_per_minute)
    return Horizon(settings), TrustlessClient(settings, budget=budget)


def due(engine: Any, settings: Any) -> bool:
    """Whether the scheduler's next report is due (the last stored one is older than the interval)."""
    if settings.reconcile_interval_hours <= 0:
        return False
    with session.transaction(engine) as conn:
        last = reconciliation_db.latest_report_at(conn)
    return last is None or (now() - last).total_seconds() >= settings.reconcile_interval_hours * 3600


def run(engine: Any, settings: Any, *, horizon: Any = None, trustless: Any = None, trigger: str = "cli") -> Report:
    """Compare, store the report, and raise the event when anything differs; returns the report."""
    report = Report(ids.new_id("reconciliation"), trigger)
    book = check.verify(engine, horizon)
    report.problems.extend(book.problems)
    with session.transaction(engine) as conn:
        lagging = reconciliation_db.users_in_flight(conn)
        escrows = reconciliation_db.escrow_books(conn)
        orphans = reconciliation_db.orphan_escrow_accounts(conn)
        tw_fees = reconciliation_db.account_total(conn, TRUSTLESS_FEES)
        settled_tw, settled_platform = reconciliation_db.settled_fees(conn)
        adjustments = reconciliation_db.account_total(conn, ADJUSTMENT)
    _wallets(report, book, lagging, horizon)
    _escrows(report, escrows, orphans, trustless)
    if tw_fees != settled_tw:
        report.differences.append({"kind": "fee_account", "account": TRUSTLESS_FEES, "book": _show(tw_fees),
                                   "expected": _show(settled_tw), "difference": _show(tw_fees - settled_tw),
                                   "detail": "the fee account is not the sum of the fees on settled orders"})
    report.summary.update({
        "paymentProvider": settings.payment_provider,
        "feeAccounts": {"trustlessFees": _show(tw_fees), "platformFeesCredited": _show(settled_platform)},
        "adjustmentAccount": _show(adjustments),
        "airtm": ("not compared: the AirTM provider client (orchestrator/providers/airtm.py) is not available "
                  "in this build") if settings.payment_provider == "airtm" else "not used",
        "differences": len(report.differences), "pending": len(report.pending), "problems": len(report.problems),
    })
    _store(engine, report)
    return report


def _wallets(report: Report, book: check.Report, lagging: set[str], horizon: Any) -> None:
    report.summary["walletsCompared"] = book.wallets_compared if horizon is not None else None
    for difference in book.differences:
        entry = {"kind": "wallet", "userId": difference.user_id, "publicKey": difference.public_key,
                 "walletStatus": difference.wallet_status, "book": _show(difference.book),
                 "available": _show(difference.available), "reserved": _show(difference.reserved),
                 "adjustments": _show(difference.adjustments), "ledger": _show(difference.ledger),
                 "difference": _show(difference.amount), "detail": difference.describe()}
        (report.pending if difference.user_id in lagging else report.differences).append(entry)


def _escrows(report: Report, escrows: list[reconciliation_db.EscrowBook], orphans: list[tuple[str, Decimal]],
             trustless: Any) -> None:
    holding = [e for e in escrows if e.status in HOLDING and e.contract_id]
    balances: dict[str, Decimal] | None = None
    if trustless is not None and holding:
        try:
            balances = trustless.escrow_balances([e.contract_id for e in holding])
        except Exception as error:  # an unreadable provider is a problem to report, not a crash mid-report
            report.problems.append(f"escrow balances could not be read from Trustless Work ({type(error).__name__})")
    report.summary["escrowsCompared"] = len(escrows)
    for escrow in escrows:
        expected = escrow.amount if escrow.status in HOLDING else Decimal(0)
        entry = {"kind": "escrow", "escrowId": escrow.escrow_id, "orderId": escrow.order_id,
                 "contractId": escrow.contract_id, "status": escrow.status,
                 "account": ESCROW_ACCOUNT.format(order_id=escrow.order_id), "book": _show(escrow.book),
                 "expected": _show(expected)}
        found, other = [], expected
        if escrow.book != expected:
            found.append(f"the book holds {_show(escrow.book)} for an escrow that should hold {_show(expected)}")
        if balances is not None and escrow in holding:
            on_ledger = balances.get(escrow.contract_id or "")
            entry["ledger"] = _show(on_ledger)
            if on_ledger is None:
                found.append("Trustless Work does not know the contract's balance")
            elif on_ledger != escrow.book:
                found.append(f"the contract holds {_show(on_ledger)}")
                other = on_ledger
        if found:
            entry["difference"] = _show(escrow.book - other)
            entry["detail"] = "; ".join(found)
            (report.pending if escrow.in_flight else report.differences).append(entry)
    for account, total in orphans:
        report.differences.append({"kind": "escrow", "account": account, "book": _show(total), "expected": "0.00",
                                   "difference": _show(total), "detail": "money in an escrow account with no escrow"})


def _store(engine: Any, report: Report) -> None:
    """The report row and, when anything differs, the event (whose audit entry comes with it)."""
    with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id=f"reconcile:{report.trigger}",
                                    correlation_id=report.id)) as uow:
        reconciliation_db.insert_report(uow.conn, id=report.id, trigger=report.trigger, status=report.status,
                                        summary=report.summary, differences=report.differences + [
                                            {**p, "pending": True} for p in report.pending],
                                        problems=report.problems)
        if not report.ok:
            uow.emit("reconciliation.differences_found", report.id, {
                "reportId": report.id, "differences": len(report.differences), "problems": report.problems[:20],
                "items": report.differences[:50]})
        else:
            uow.audit("reconciliation.completed", "Reconciliation", report.id,
                      after={"reportId": report.id, "status": report.status, "pending": len(report.pending)})
        uow.commit()
    if not report.ok:
        log.warning("Reconciliation %s found %d difference(s) and %d problem(s)", report.id,
                    len(report.differences), len(report.problems))
