"""The reconciliation report: the book against the ledger (and AirTM), every difference written down.

Compared, each with the amounts on both sides:

- the book's own invariants (``check.verify``: projection = journal, every transaction sums to zero);
- each wallet (the platform's too): ``available + reserved = ledger USDC + net adjustments`` (decision 7);
- each live escrow: its ``escrow:<order>`` account against the escrow's amount (FUNDED and DISPUTED hold
  it, every other state holds nothing) and, for FUNDED/DISPUTED, against the contract's balance (T11);
- the Trustless Work fee account against the fees recorded on settled orders;
- the treasury pool (decision 25): its accounts' USDC on the ledger less the journal's ``platform:treasury``
  and ``platform:settlement`` is the operator's float, compared to the stroop with the float the operator
  recorded (``offerhub reconcile --record-float``, run after paying USDC into the pool or taking some out;
  nothing is compared before the first record); the escrows it backs are compared like every escrow;
- while AirTM money exists (AirTM mode, or AIRTM-backed users after a switch, decision 26): the enterprise
  balance against the AIRTM-backed users' balances (``airtm_treasury``), its ``operatorFunds`` to the cent
  against the figure recorded with the pool's, and each top-up
  and AirTM withdrawal changed since the previous report (at most ``AIRTM_ITEMS``) against the
  pay-in's or payout's status at AirTM: a final status in the book that AirTM does not show is a
  difference; AirTM ahead of an open one is pending (the refresh sweep moves it).

A wallet or escrow with a ledger step running (or a deposit not yet credited) may legitimately be ahead
of the book for a moment: it is listed under ``pending``, not as a difference. Differences raise
``reconciliation.differences_found`` (and so its audit entry); every run is stored, with or without.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator import amounts, ids
from orchestrator.accounts import treasury as treasury_pool
from orchestrator.db import reconciliation as reconciliation_db
from orchestrator.db import session
from orchestrator.escrow.escrows import ESCROW_ACCOUNT, TRUSTLESS_FEES
from orchestrator.events import now
from orchestrator.money.ledger import ADJUSTMENT
from orchestrator.operations import check
from orchestrator.unit_of_work import Context, UnitOfWork

log = logging.getLogger(__name__)
#: Escrow states in which the contract holds the escrow's amount.
HOLDING = frozenset({"FUNDED", "DISPUTED"})
#: AirTM records read per report at most (one request each).
AIRTM_ITEMS = 200


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
    return None if value is None else amounts.format_balance(value)


def airtm_client(settings: Any, engine: Any = None) -> Any:
    """The AirTM client a reconciliation reads: in AirTM mode, and in crypto mode while AIRTM-backed users
    remain (their claims stay at AirTM after a switch, decision 26); None when AirTM is not configured."""
    if not settings.airtm_configured:
        return None
    if settings.payment_provider != "airtm" and (engine is None or not _airtm_backed_users(engine)):
        return None
    from orchestrator.providers.airtm import AirtmClient

    return AirtmClient(settings)


def _airtm_backed_users(engine: Any) -> bool:
    from orchestrator.db import users as users_db

    with engine.connect() as conn:
        return users_db.any_backed(conn, "AIRTM")


def providers(settings: Any) -> tuple[Any, Any]:
    """The Horizon and Trustless Work clients a reconciliation reads, in either mode: WALLET-backed users keep
    their wallets after a switch, and escrow (the treasury pool's too) lives on the ledger in both."""
    from orchestrator.providers.horizon import Horizon
    from orchestrator.providers.trustless import TrustlessClient

    budget = None
    if settings.trustless_requests_per_minute > 0:  # the budget every process shares (decision 14)
        import redis

        from orchestrator.providers.rate_budget import RateBudget
        budget = RateBudget(redis.Redis.from_url(settings.redis_url), settings.redis_prefix,
                            per_minute=settings.trustless_requests_per_minute)
    return Horizon(settings), TrustlessClient(settings, budget=budget)


def record_float(engine: Any, horizon: Any, airtm: Any) -> str | None:
    """Record the operator's float as it is now (``offerhub reconcile --record-float``); why not, or ``None``."""
    from orchestrator.airtm import enterprise

    operator_funds = enterprise.read(engine, airtm).operator_funds if airtm is not None else None
    return treasury_pool.record_float(engine, treasury_pool.read_pool(engine, horizon), operator_funds)


def due(engine: Any, settings: Any) -> bool:
    """Whether the scheduler's next report is due (the last stored one is older than the interval)."""
    if settings.reconcile_interval_hours <= 0:
        return False
    with session.transaction(engine) as conn:
        last = reconciliation_db.latest_report_at(conn)
    return last is None or (now() - last).total_seconds() >= settings.reconcile_interval_hours * 3600


def run(engine: Any, settings: Any, *, horizon: Any = None, trustless: Any = None, airtm: Any = None,
        trigger: str = "cli") -> Report:
    """Compare, store the report, and raise the event when anything differs; returns the report.

    ``airtm`` is an ``AirtmClient`` (AirTM mode); without one in AirTM mode the summary says AirTM was
    not compared."""
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
        since = reconciliation_db.latest_report_at(conn)
        items = reconciliation_db.airtm_items(conn, since, AIRTM_ITEMS) if airtm is not None else []
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
        "airtm": ("not compared: AirTM is not configured (AIRTM_API_KEY, AIRTM_API_SECRET)"
                  if settings.payment_provider == "airtm" else "not used"),
    })
    if horizon is not None:
        _pool(report, engine, horizon)
    if airtm is not None:
        _airtm(report, engine, airtm, items)
    report.summary.update(differences=len(report.differences), pending=len(report.pending),
                          problems=len(report.problems))
    _store(engine, report)
    return report


def _airtm(report: Report, engine: Any, client: Any, items: list[tuple[str, str, str, str]]) -> None:
    """The enterprise balance against the users' balances, then each recent item against AirTM's record."""
    from orchestrator.airtm import enterprise, topups, withdrawals

    try:
        treasury = enterprise.read(engine, client)
    except Exception as error:  # an unreadable provider is a problem to report, not a crash mid-report
        report.problems.append(f"the AirTM enterprise balance could not be read ({type(error).__name__})")
        report.summary["airtm"] = "not compared: AirTM could not be read"
        return
    recorded = treasury_pool.recorded_enterprise_float(engine)
    report.summary["airtm"] = {**treasury.as_json(), "itemsCompared": len(items),
                               "recordedOperatorFunds": _show(recorded)}
    if not treasury.covered:
        report.differences.append({"kind": "airtm_treasury", **treasury.as_json(),
                                   "difference": _show(treasury.platform_owned),
                                   "detail": treasury.describe()})
    pending_before = len(report.pending)
    for kind, item_id, status, ref in items:
        mapping, final = ((topups.PAYIN_STATUS, topups.TERMINAL) if kind == "topup"
                          else (withdrawals.PAYOUT_STATUS, withdrawals.TERMINAL))
        try:
            record = client.payin(ref) if kind == "topup" else client.payout(ref)
        except Exception as error:
            report.problems.append(f"{kind} {item_id}: AirTM could not be read ({type(error).__name__})")
            continue
        at_airtm = str((record or {}).get("status", "")).upper()
        mapped = mapping.get(at_airtm)
        entry = {"kind": f"airtm_{kind}", "id": item_id, "airtmId": ref, "book": status, "airtm": at_airtm or None}
        if record is None:
            report.differences.append({**entry, "detail": f"AirTM does not know {kind} {item_id}'s record {ref}"})
        elif mapped != status and status in final:
            report.differences.append({**entry, "detail": f"the book says {status}, AirTM says {at_airtm}"})
        elif mapped != status and mapped in final:
            report.pending.append({**entry, "detail": f"AirTM says {at_airtm}; the refresh sweep will apply it"})
    if recorded is not None and treasury.operator_funds != recorded:
        # to the cent: the enterprise's money the journal never saw arrive changed without the operator saying so
        entry = {"kind": "airtm_enterprise", "book": _show(recorded), "airtm": _show(treasury.operator_funds),
                 "difference": _show(treasury.operator_funds - recorded),
                 "detail": f"the AirTM enterprise holds {_show(treasury.operator_funds - recorded)} USD more than "
                           f"the users' claims, the payouts not yet sent and the operator's recorded funds "
                           f"{_show(recorded)} explain ({treasury.describe()})"}
        (report.pending if len(report.pending) > pending_before else report.differences).append(entry)


def _pool(report: Report, engine: Any, horizon: Any) -> None:
    """The treasury pool's USDC on the ledger against the journal's pool accounts and the recorded float."""
    pool = treasury_pool.read_pool(engine, horizon)
    report.summary["treasuryPool"] = pool.as_json()
    report.problems.extend(pool.errors)
    difference = pool.difference
    if difference:
        entry = {"kind": "treasury_pool", "book": f"{pool.recorded:.7f}", "ledger": f"{pool.operator_float:.7f}",
                 "difference": f"{difference:.7f}",
                 "detail": f"the treasury pool holds {difference:.7f} USDC more than the journal and the recorded "
                           f"float explain ({pool.describe()})"}
        (report.pending if pool.in_flight else report.differences).append(entry)


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
