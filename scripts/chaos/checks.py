"""What must hold after the chaos stops: quiescence first, then every invariant, each printed as a figure.

``wait_quiet`` waits until nothing is left to do (no pending command or running flow, no open chain
step, no pending deposit, top-up or AirTM webhook, every event relayed). ``check`` then reads the run's
database (directly, not through the proxy), the sandbox ledger and AirTM, and what the driver recorded,
and returns one ``Figure`` per invariant; any failing figure makes the run fail. ``check`` only reads, so
it can be run again after the database was changed (the test corrupts a balance to prove the checker fires).

The money of both backings is compared with the product's own functions (``orchestrator/operations/check.py``,
``orchestrator/accounts/treasury.py``, ``orchestrator/airtm/enterprise.py``), never a copy of them: each wallet's book
against its ledger USDC; the treasury pool's USDC on the ledger against the journal's pool accounts and the
float recorded at the start (to the stroop); the AirTM enterprise balance at the sandbox against the users'
AirTM claims and the operator funds recorded at the start (to the cent). ``reconciliation_figure`` shows the
``offerhub reconcile`` report the run stores after quiescence (escrows against their contracts, fees, the
pool, AirTM's records).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg
import requests

from scripts.chaos.driver import Facts, Listener
from scripts.chaos.rig import Switch

#: Order states that wait for the marketplace's next call (states.md §2.1): not stuck by themselves.
WAITING_ORDER_STATES = ("ORDER_CREATED", "FUNDS_RESERVED", "IN_PROGRESS", "DISPUTED")
TERMINAL_WITHDRAWALS = ("WITHDRAWAL_COMPLETED", "WITHDRAWAL_FAILED", "WITHDRAWAL_CANCELED")
#: Journal kinds that may happen once per reference (a deposit's tx:op, a withdrawal, an order's settlement).
ONCE_PER_REFERENCE = ("deposit", "withdrawal_created", "withdrawal_failed", "reserve")

OPEN_WORK = {
    "pending commands": "SELECT count(*) FROM commands WHERE status = 'PENDING'",
    "running ledger flows": "SELECT count(*) FROM commands WHERE flow_status = 'RUNNING'",
    "open chain steps": "SELECT count(*) FROM chain_steps WHERE status IN ('PENDING', 'SIGNED')",
    "pending deposits": "SELECT count(*) FROM deposits WHERE status = 'PENDING'",
    "unrelayed events": "SELECT count(*) FROM outbox WHERE position IS NULL",
    "top-ups being created or processed": "SELECT count(*) FROM topups WHERE status IN ('TOPUP_CREATED', "
                                          "'TOPUP_PROCESSING')",
    "AirTM webhooks not processed": "SELECT count(*) FROM airtm_webhooks WHERE status = 'PENDING'",
}


@dataclass
class Figure:
    name: str
    value: str
    ok: bool = True
    details: list[str] = field(default_factory=list)


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.figures)

    @property
    def violations(self) -> list[Figure]:
        return [f for f in self.figures if not f.ok]

    def add(self, name: str, value: Any, ok: bool = True, details: list[str] | None = None) -> None:
        self.figures.append(Figure(name, str(value), ok, details or []))

    def lines(self) -> list[str]:
        out = []
        for figure in self.figures:
            out.append(f"{figure.name:<58} {figure.value:<28} {'ok' if figure.ok else 'VIOLATION'}")
            out += [f"    {line}" for line in figure.details[:10]]
            if len(figure.details) > 10:
                out.append(f"    … and {len(figure.details) - 10} more")
        return out


def scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def open_work(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return {name: int(scalar(conn, sql)) for name, sql in OPEN_WORK.items()}


def wait_quiet(database_urls: list[str], seconds: float,
               settle: float = 3.0) -> tuple[bool, float, dict[str, int]]:
    """Wait until no work is open in any of the databases for ``settle`` seconds in a row; returns (quiet,
    seconds waited, last counts)."""
    started = time.monotonic()
    quiet_since: float | None = None
    counts: dict[str, int] = {}
    while time.monotonic() - started < seconds:
        try:
            counts = {}
            for url in database_urls:
                for name, count in open_work(url).items():
                    counts[name] = counts.get(name, 0) + count
        except psycopg.Error:
            time.sleep(0.5)
            continue
        if any(counts.values()):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return True, time.monotonic() - started, counts
        time.sleep(0.5)
    return False, time.monotonic() - started, counts


def ledger_account(sandbox_url: str, account: str) -> dict[str, Any] | None:
    reply = requests.get(f"{sandbox_url}/horizon/accounts/{account}", timeout=30)
    return reply.json() if reply.status_code == 200 else None


def ledger_usdc(account: dict[str, Any] | None) -> Decimal:
    if account is None:
        return Decimal(0)
    return next((Decimal(b["balance"]) for b in account["balances"] if b.get("asset_code") == "USDC"), Decimal(0))


def usdc_payments_to(sandbox_url: str, account: str) -> list[dict[str, Any]]:
    """Every USDC payment record into ``account`` (Horizon's per-account payments, all pages)."""
    records: list[dict[str, Any]] = []
    cursor = ""
    while True:
        params = {"limit": 200, "order": "asc", **({"cursor": cursor} if cursor else {})}
        reply = requests.get(f"{sandbox_url}/horizon/accounts/{account}/payments", params=params, timeout=30)
        reply.raise_for_status()
        page = reply.json()["_embedded"]["records"]
        records += [r for r in page if r.get("type") == "payment" and r.get("to") == account
                    and r.get("asset_code") == "USDC"]
        if len(page) < 200:
            return records
        cursor = page[-1]["paging_token"]


def check(database_url: str, sandbox_url: str, env: dict[str, str], facts: Facts,
          listeners: list[Listener], switches: list[Switch] | None = None) -> Report:
    report = Report()
    airtm = bool(env.get("AIRTM_API_KEY"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        check_orders(conn, facts, report)
        check_switches(facts, switches or [], report)
        check_stuck(conn, report)
        check_book(database_url, env, report)
        check_deposits(conn, facts, report)
        check_payments(conn, sandbox_url, facts, report)
        if airtm:
            check_airtm(conn, sandbox_url, facts, report)
        check_listeners(conn, listeners, report)
    if airtm:
        check_treasury(database_url, env, report)
    return report


def check_switches(facts: Facts, switches: list[Switch], report: Report) -> None:
    """Each provider switch made mid-run, with the orders funded before it and settled by a call answered
    after it (the driver holds a few funded orders across each switch): at least one per switch."""
    for n, switch in enumerate(switches, 1):
        spanned = Counter(life.funding_mode for life in facts.lifecycles if life.spans(switch.started, switch.ended))
        report.add(f"switch {n} to {switch.provider} ({switch.ended - switch.started:.0f} s): funded before, settled "
                   "after", f"WALLET {spanned['WALLET']}, TREASURY {spanned['TREASURY']}",
                   sum(spanned.values()) > 0,
                   [] if spanned else ["no order was funded before the switch and settled after it"])


def check_airtm(conn: psycopg.Connection[Any], sandbox_url: str, facts: Facts, report: Report) -> None:
    """Every confirmed top-up credited exactly once with its amount, one pay-in at AirTM per top-up; every
    AirTM withdrawal one payout at AirTM, whose status and amount the book's final status follows."""
    rows = {r[0]: r for r in conn.execute(
        "SELECT t.id, t.status, t.amount, (SELECT count(*) FROM journal_transactions j WHERE j.kind = 'topup' "
        "AND j.reference = t.id) FROM topups t").fetchall()}
    state = requests.get(f"{sandbox_url}/_sandbox/state", timeout=60).json()
    payins = Counter(p.get("code") for p in state.get("airtm", state).get("payins", []))
    problems = []
    for topup in facts.topups.values():
        row = rows.get(topup.id)
        if row is None:
            problems.append(f"{topup.id}: not in the database")
            continue
        credited = row[1] == "TOPUP_SUCCEEDED" and row[3] == 1 and Decimal(row[2]) == topup.amount
        if topup.confirmed and not credited:
            problems.append(f"{topup.id}: confirmed at AirTM but {row[1]}, credited {row[3]} time(s)")
        if row[3] > 1 or (row[3] and row[1] != "TOPUP_SUCCEEDED"):
            problems.append(f"{topup.id}: {row[1]} credited {row[3]} time(s)")
        if payins.get(topup.id, 0) != 1:
            problems.append(f"{topup.id}: {payins.get(topup.id, 0)} pay-in(s) at AirTM")
    confirmed = sum(t.confirmed for t in facts.topups.values())
    report.add("AirTM top-ups made / confirmed / credited exactly once",
               f"{len(facts.topups)} / {confirmed} / {confirmed - len([p for p in problems if 'confirmed' in p])}",
               not problems, problems)
    payouts: dict[str, list[dict[str, Any]]] = {}
    for payout in state.get("airtm", state).get("payouts", []):
        payouts.setdefault(str(payout.get("code")), []).append(payout)
    final = {"WITHDRAWAL_COMPLETED": "COMPLETED", "WITHDRAWAL_FAILED": "FAILED", "WITHDRAWAL_CANCELED": "CANCELED"}
    withdrawals = conn.execute("SELECT id, status, amount FROM withdrawals WHERE destination_type <> 'crypto'"
                               ).fetchall()
    problems = []
    for withdrawal_id, status, amount in withdrawals:
        found = payouts.get(withdrawal_id, [])
        if len(found) != 1:
            problems.append(f"{withdrawal_id} ({status}): {len(found)} payout(s) at AirTM")
            continue
        at_airtm = str(found[0].get("status"))
        if Decimal(str(found[0].get("grossAmount"))) != Decimal(amount):
            problems.append(f"{withdrawal_id}: {amount} in the book, a payout of {found[0].get('grossAmount')}")
        if status in final and at_airtm != final[status]:
            problems.append(f"{withdrawal_id}: {status} in the book, {at_airtm} at AirTM")
    completed = sum(1 for w in withdrawals if w[1] == "WITHDRAWAL_COMPLETED")
    report.add("AirTM withdrawals made / completed, one payout each", f"{len(withdrawals)} / "
               f"{completed}", not problems, problems)


def check_treasury(database_url: str, env: dict[str, str], report: Report) -> None:
    """The treasury pool and the AirTM enterprise, with ``offerhub check``'s own functions."""
    from orchestrator.accounts import treasury as treasury_pool
    from orchestrator.airtm import enterprise
    from orchestrator.amounts import format_balance
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import check as book_check
    from orchestrator.operations import reconcile
    from orchestrator.providers.horizon import Horizon
    from orchestrator.settings import Settings

    settings = Settings.from_env({**env, "DATABASE_URL": database_url})
    engine = create_sync_engine(database_url, pool_size=1)
    try:
        found = book_check.Report()
        pool = book_check.verify_pool(engine, Horizon(settings), found)
        recorded = "not recorded" if pool.recorded is None else f"{pool.recorded:.7f}"
        report.add("treasury pool: ledger - journal = recorded float (stroop)",
                   f"{pool.operator_float:.7f} = {recorded}", pool.recorded is not None and not found.problems,
                   [*found.problems, pool.describe()])
        report.add("treasury pool: escrows it backs (count / USDC)", f"{pool.backed_escrows} / {pool.backed_amount}")
        client = reconcile.airtm_client(settings, engine)
        if client is None:
            report.add("AirTM enterprise compared", "no (AirTM not configured)", False)
            return
        with client:
            treasury = enterprise.read(engine, client)
        found = book_check.Report()
        book_check.verify_enterprise(engine, treasury, found)
        recorded_funds = treasury_pool.recorded_enterprise_float(engine)
        report.add("AirTM enterprise - unsent payouts >= users' claims",
                   f"{format_balance(treasury.enterprise_available - treasury.payouts_unsent)} >= "
                   f"{format_balance(treasury.user_claims)}",
                   treasury.covered, [treasury.describe()])
        report.add("AirTM enterprise: operator funds = recorded (to the cent)",
                   f"{format_balance(treasury.operator_funds)} = "
                   f"{'not recorded' if recorded_funds is None else format_balance(recorded_funds)}",
                   recorded_funds is not None and not found.problems, found.problems)
    finally:
        engine.dispose()


def reconciliation_figure(found: Any, report: Report) -> None:
    """The ``offerhub reconcile`` report stored after quiescence (``orchestrator/operations/reconcile.py``): every
    wallet, escrow (against its contract), fee account, the pool and AirTM's records; differences and problems fail."""
    if found is None:
        report.add("offerhub reconcile after quiescence", "not run", False)
        return
    details = [f"{d['kind']}: {d.get('detail')}" for d in found.differences] + list(found.problems)
    details += [f"pending {d['kind']}: {d.get('detail')}" for d in found.pending]
    report.add("offerhub reconcile: differences / problems (pending)",
               f"{len(found.differences)} / {len(found.problems)} ({len(found.pending)})", found.ok, details)


def check_orders(conn: psycopg.Connection[Any], facts: Facts, report: Report) -> None:
    rows = conn.execute("SELECT o.id, o.status, o.final_status, e.status FROM orders o LEFT JOIN escrows e "
                        "ON e.order_id = o.id AND e.status <> 'DISCARDED'").fetchall()
    by_state = Counter(f"{r[1]}{'/' + r[2] if r[2] else ''}" for r in rows)
    stuck = [f"{r[0]} {r[1]} (escrow {r[3]})" for r in rows if not (
        r[1] == "CLOSED" or r[1] in WAITING_ORDER_STATES or (r[1] == "ESCROW_CREATING" and r[3] == "CREATED"))]
    report.add("orders by state", ", ".join(f"{k} {n}" for k, n in sorted(by_state.items())) or "none")
    modes = Counter(r[0] for r in conn.execute("SELECT funding_mode FROM orders WHERE status = 'CLOSED' AND "
                                                "final_status <> 'CANCELED'"))
    report.add("orders escrowed and closed, by funding (WALLET / TREASURY)", f"{modes['WALLET']} / {modes['TREASURY']}")
    report.add("orders neither terminal nor in a waiting state", len(stuck), not stuck, stuck)
    expected = {life.order_id: life for life in facts.lifecycles if life.order_id.startswith("ord_")}
    finals = {r[0]: r[2] for r in rows}
    from scripts.chaos.driver import FINAL_STATUS

    wrong = [f"{oid} ({life.kind}) closed {finals.get(oid)}" for oid, life in expected.items()
             if life.outcome == "done" and finals.get(oid) != FINAL_STATUS[life.kind]]
    report.add("completed lifecycles closed with the wrong final status", len(wrong), not wrong, wrong)


def check_stuck(conn: psycopg.Connection[Any], report: Report) -> None:
    for name, sql in OPEN_WORK.items():
        count = int(scalar(conn, sql))
        report.add(f"{name} after quiescence", count, count == 0)
    failed = conn.execute("SELECT kind, last_error FROM chain_steps WHERE status = 'FAILED'").fetchall()
    report.add("chain steps failed visibly (MAX_ATTEMPTS or final codes)", len(failed), True,
               [f"{k}: {(e or '')[:150]}" for k, e in failed])
    open_withdrawals = conn.execute("SELECT id, status FROM withdrawals WHERE status <> ALL(%s)",
                                    (list(TERMINAL_WITHDRAWALS),)).fetchall()
    report.add("withdrawals not terminal", len(open_withdrawals), not open_withdrawals,
               [f"{w} {s}" for w, s in open_withdrawals])


def check_book(database_url: str, env: dict[str, str], report: Report) -> None:
    """The journal balances and the projection equals it (orchestrator/operations/check.py), and each wallet's book
    equals its USDC on the sandbox ledger (DESIGN decision 7)."""
    from orchestrator.db import create_sync_engine
    from orchestrator.operations import check as book_check
    from orchestrator.providers.horizon import Horizon
    from orchestrator.settings import Settings

    settings = Settings.from_env({**env, "DATABASE_URL": database_url})
    engine = create_sync_engine(database_url, pool_size=1)
    try:
        report_ = book_check.verify(engine, Horizon(settings))
    finally:
        engine.dispose()
    unbalanced = [p for p in report_.problems if "sum" in p]
    projection = [p for p in report_.problems if "projection" in p or "negative" in p]
    other = [p for p in report_.problems if p not in unbalanced and p not in projection]
    report.add("journal transactions that do not balance", len(unbalanced), not unbalanced, unbalanced)
    report.add("balances where projection != journal (or negative)", len(projection), not projection, projection)
    report.add(f"wallets whose book != ledger USDC (of {report_.wallets_compared} compared)",
               len(report_.differences), not report_.differences and not other,
               [d.describe() for d in report_.differences] + other)


def check_deposits(conn: psycopg.Connection[Any], facts: Facts, report: Report) -> None:
    rows = conn.execute("SELECT d.tx_hash, d.op_index, d.status, d.amount, "
                        "(SELECT count(*) FROM journal_transactions j WHERE j.kind = 'deposit' "
                        " AND j.reference = d.tx_hash || ':' || d.op_index) FROM deposits d").fetchall()
    by_hash = {r[0]: r for r in rows}
    problems = []
    for deposit in facts.deposits:
        row = by_hash.get(deposit.tx_hash)
        if row is None:
            problems.append(f"{deposit.tx_hash} ({deposit.amount} to {deposit.user_id}): never recorded")
        elif row[2] != "CREDITED" or row[4] != 1 or Decimal(row[3]) != deposit.amount:
            problems.append(f"{deposit.tx_hash}: status {row[2]}, credited {row[4]} time(s), amount {row[3]} "
                            f"(paid {deposit.amount})")
    twice = [r[0] for r in rows if r[4] > 1]
    report.add("deposits paid on the ledger / credited exactly once",
               f"{len(facts.deposits)} / {len(facts.deposits) - len(problems)}", not problems and not twice,
               problems + [f"{h} credited more than once" for h in twice])


def check_payments(conn: psycopg.Connection[Any], sandbox_url: str, facts: Facts, report: Report) -> None:
    """No ledger payment made twice: each outside account received exactly its completed withdrawals,
    one payment each; no two confirmed chain steps share a transaction; no book entry made twice."""
    rows = conn.execute("SELECT id, user_id, destination_ref, amount, status, transaction_hash FROM withdrawals "
                        "WHERE destination_type = 'crypto'").fetchall()
    problems = []
    by_destination: dict[str, list[Any]] = {}
    for row in rows:
        by_destination.setdefault(row[2], []).append(row)
    for lane in facts.lanes:
        if not lane.outside:
            continue  # an AIRTM lane: its withdrawals are AirTM payouts (check_airtm)
        completed = [r for r in by_destination.get(lane.outside, []) if r[4] == "WITHDRAWAL_COMPLETED"]
        payments = usdc_payments_to(sandbox_url, lane.outside)
        want = sum((Decimal(r[3]) for r in completed), Decimal(0))
        got = sum((Decimal(p["amount"]) for p in payments), Decimal(0))
        hashes = Counter(p["transaction_hash"] for p in payments)
        if len(payments) != len(completed) or got != want or any(n > 1 for n in hashes.values()):
            problems.append(f"{lane.outside}: {len(payments)} payment(s) of {got} USDC for {len(completed)} "
                            f"completed withdrawal(s) of {want}")
        missing = [r[0] for r in completed if r[5] not in hashes]
        problems += [f"withdrawal {w} completed without its payment on the ledger" for w in missing]
    completed_count = sum(1 for r in rows if r[4] == "WITHDRAWAL_COMPLETED")
    report.add("withdrawals made / completed / failed",
               f"{len(rows)} / {completed_count} / {sum(1 for r in rows if r[4] == 'WITHDRAWAL_FAILED')}")
    report.add("withdrawal payments on the ledger that do not match the book", len(problems), not problems,
               problems)
    shared = conn.execute("SELECT tx_hash, count(*) FROM chain_steps WHERE status = 'CONFIRMED' AND tx_hash IS "
                          "NOT NULL GROUP BY tx_hash HAVING count(*) > 1").fetchall()
    report.add("ledger transactions confirmed for two chain steps", len(shared), not shared,
               [f"{h} x{n}" for h, n in shared])
    twice = conn.execute(
        "SELECT kind, reference, count(*) FROM journal_transactions WHERE (kind = ANY(%s) OR kind LIKE 'escrow\\_%%' "
        "AND kind <> 'escrow_funding_failed') GROUP BY kind, reference HAVING count(*) > 1",
        (list(ONCE_PER_REFERENCE),)).fetchall()
    funded = conn.execute(
        "SELECT reference, sum(CASE WHEN kind = 'fund_escrow' THEN 1 ELSE -1 END) FROM journal_transactions "
        "WHERE kind IN ('fund_escrow', 'escrow_funding_failed') GROUP BY reference "
        "HAVING sum(CASE WHEN kind = 'fund_escrow' THEN 1 ELSE -1 END) NOT IN (0, 1)").fetchall()
    report.add("book entries made twice (deposit, withdrawal, reserve, settlement, funding)",
               len(twice) + len(funded), not twice and not funded,
               [f"{k} {r} x{n}" for k, r, n in twice] + [f"fund_escrow {r} net {n}" for r, n in funded])


def check_listeners(conn: psycopg.Connection[Any], listeners: list[Listener], report: Report) -> None:
    positions = {int(p) for (p,) in conn.execute("SELECT position FROM outbox WHERE position IS NOT NULL")}
    top = max(positions, default=0)
    for listener in listeners:
        seen = set(listener.seen)
        missing = sorted(positions - seen)
        extra = sorted(seen - positions)
        problems = ([f"missed {len(missing)} event(s), first positions {missing[:10]}"] if missing else []) + (
            [f"{listener.duplicates} event(s) received more than once"] if listener.duplicates else []) + (
            [f"positions that are not in the outbox: {extra[:10]}"] if extra else []) + (
            [f"{listener.gaps} stream.gap notice(s)"] if listener.gaps else [])
        report.add(f"SSE {listener.name}: reconnects with Last-Event-ID / events seen of {top}",
                   f"{listener.reconnects_with_id} / {len(seen)}", not problems,
                   problems
                   + ([f"{listener.where}, last byte {time.monotonic() - listener.last_byte_at:.0f} s ago, "
                       f"connects {listener.connects}, last position {listener.last}, refused "
                       f"{dict(listener.refused)}, errors {dict(listener.errors)}"] if problems else []))
