"""What an operator watches: backlogs and their ages, the monitor's lag behind the ledger, and the
scheduler's reconciliation of each wallet's ledger USDC with the book (``/metrics``, ``/health/detailed``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from orchestrator.db import operations as operations_db
from orchestrator.db import session
from orchestrator.operations import check
from orchestrator.payments import deposits
from orchestrator.providers.horizon import Horizon

log = logging.getLogger(__name__)
#: Payments read past the monitor's cursor at most (the lag's count saturates there).
UNSEEN_PAGE = 200
RECONCILIATION = "reconciliation"


@dataclass(frozen=True)
class Backlog:
    """What is waiting in the database, with the age in seconds of the oldest of each kind (0 when none)."""

    commands_pending: int
    oldest_command_seconds: float
    chain_steps_open: int
    oldest_chain_step_seconds: float
    outbox_unrelayed: int
    outbox_lag_seconds: float
    deposits_pending: int
    oldest_deposit_seconds: float
    monitor_cursor: str | None

    @classmethod
    def from_row(cls, row: Any) -> Backlog:
        r = row._mapping
        return cls(int(r["commands_pending"]), float(r["oldest_command_seconds"] or 0),
                   int(r["chain_steps_open"]), float(r["oldest_chain_step_seconds"] or 0),
                   int(r["outbox_unrelayed"]), float(r["outbox_lag_seconds"] or 0),
                   int(r["deposits_pending"]), float(r["oldest_deposit_seconds"] or 0), r["monitor_cursor"])


def backlog_statement() -> Any:
    return operations_db.backlog(deposits.STREAM_CURSOR)


@dataclass(frozen=True)
class MonitorLag:
    """How far the monitor's stored cursor trails the ledger: the age of the oldest payment it has not
    recorded yet (0 when it has seen the newest) and how many it has not seen (up to ``UNSEEN_PAGE``)."""

    seconds: float | None
    unseen: int
    error: str | None = None


async def monitor_lag(http: aiohttp.ClientSession, horizon_url: str, cursor: str | None) -> MonitorLag:
    """One Horizon read: the payments after the monitor's cursor."""
    if cursor is None:
        return MonitorLag(None, 0, "the monitor has not stored a cursor yet")
    params = {"cursor": cursor, "order": "asc", "limit": str(UNSEEN_PAGE)}
    try:
        # never a 410 for an ascending cursor (stellar/go services/horizon/internal/actions/helpers.go): the
        # monitor itself compares its cursor with Horizon's history and reports a network reset (below)
        async with http.get(f"{horizon_url}/payments", params=params) as response:
            response.raise_for_status()
            records = (await response.json())["_embedded"]["records"]
    except Exception as error:  # the figure is unknown, which is itself worth reporting
        return MonitorLag(None, 0, f"Horizon: {type(error).__name__}")
    if not records:
        return MonitorLag(0.0, 0)
    oldest = datetime.fromisoformat(str(records[0]["created_at"]).replace("Z", "+00:00"))
    return MonitorLag(max(0.0, (datetime.now(UTC) - oldest).total_seconds()), len(records))


@dataclass(frozen=True)
class Reconciliation:
    """The scheduler's last comparison of the book with the ledger."""

    wallets_compared: int
    differences: int
    problems: int
    difference_total: str  # the sum of |book - ledger justified|, as a decimal string

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(engine: Any, horizon: Horizon) -> Reconciliation:
    """Compare every wallet's ledger USDC with the book (``offerhub check``) and store the figures."""
    report = check.verify(engine, horizon)
    total = sum((abs(d.amount) for d in report.differences), start=0)
    figures = Reconciliation(report.wallets_compared, len(report.differences), len(report.problems), str(total))
    for difference in report.differences[:20]:
        log.warning("Reconciliation: %s", difference.describe())
    for problem in report.problems[:20]:
        log.warning("Reconciliation: %s", problem)
    with session.transaction(engine) as conn:
        operations_db.put_figures(conn, RECONCILIATION, figures.as_dict())
        conn.commit()
    return figures


def network_statement() -> Any:
    """The monitor's last word on the network (``monitor.NETWORK``): a detected reset, if any."""
    return operations_db.figures("network")


def network_health(row: Any) -> dict[str, Any] | None:
    """``critical`` while a detected network reset awaits an operator (DESIGN decision 35), else None."""
    if row is None or row.figures.get("status") != "reset_detected":
        return None
    figures = row.figures
    return {"status": "critical", "detectedAt": figures.get("detectedAt"),
            "previousLedger": figures.get("previousLedger"), "latestLedger": figures.get("latestLedger"),
            "error": "the Stellar network was reset: balances are kept, run `offerhub check` for the wallets and "
                     "open escrows missing from the new chain"}


def figures_statement() -> Any:
    return operations_db.figures(RECONCILIATION)


def stored_reconciliation(row: Any) -> tuple[Reconciliation, float] | None:
    """The stored figures and their age in seconds, from ``operations_db.figures(RECONCILIATION)``."""
    if row is None:
        return None
    return Reconciliation(**row.figures), float(row.age)  # not money
