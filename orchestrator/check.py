"""Invariants verified by ``offerhub check`` and the tests: the book is internally consistent."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from orchestrator.db import ledger as ledger_db
from orchestrator.db import session
from orchestrator.ledger import AVAILABLE, RESERVED, user_account


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(engine: Any) -> Report:
    """The projection equals the journal, every journal transaction sums to zero, nothing is negative."""
    report = Report()
    with session.transaction(engine) as conn:
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
    return report
