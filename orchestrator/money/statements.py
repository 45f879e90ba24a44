"""Account statements: opening balance, every movement with what caused it, closing balance.

Built from the journal alone, in one snapshot, so ``opening + movements = closing`` holds by
construction; without an end, the closing balance is also compared with the balance projection (they
are equal while ``offerhub check`` passes) and a difference is reported, never hidden.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from orchestrator import amounts
from orchestrator.db import session
from orchestrator.db import statements as statements_db
from orchestrator.errors import NotFound
from orchestrator.events import iso

#: Reference prefixes and the field of the movement that names what caused it.
_SOURCES = (("ord_", "orderId"), ("wd_", "withdrawalId"), ("topup_", "topupId"))
CSV_COLUMNS = ("line", "occurredAt", "transactionId", "kind", "orderId", "withdrawalId", "depositHash", "topupId",
               "reference", "description", "availableChange", "reservedChange", "amount", "available", "reserved",
               "total")


@dataclass(frozen=True)
class Balance:
    available: Decimal
    reserved: Decimal

    @property
    def total(self) -> Decimal:
        return self.available + self.reserved

    def __add__(self, other: Balance) -> Balance:
        return Balance(self.available + other.available, self.reserved + other.reserved)

    def as_dict(self) -> dict[str, str]:
        show = amounts.format_balance
        return {"available": show(self.available), "reserved": show(self.reserved), "total": show(self.total)}


@dataclass(frozen=True)
class Movement:
    transaction_id: int
    occurred_at: datetime
    kind: str
    reference: str | None
    description: str | None
    change: Balance
    after: Balance

    def source(self) -> dict[str, str | None]:
        """The order, withdrawal, deposit hash or top-up behind the movement (or an adjustment's reference)."""
        found: dict[str, str | None] = {"orderId": None, "withdrawalId": None, "depositHash": None, "topupId": None}
        ref = self.reference or ""
        if self.kind == "deposit":
            found["depositHash"] = ref.split(":", 1)[0] or None
        for prefix, name in _SOURCES:
            if ref.startswith(prefix):
                found[name] = ref
        return found

    def as_dict(self) -> dict[str, Any]:
        show = amounts.format_balance
        return {"transactionId": str(self.transaction_id), "occurredAt": iso(self.occurred_at), "kind": self.kind,
                **self.source(), "reference": self.reference, "description": self.description,
                "availableChange": show(self.change.available), "reservedChange": show(self.change.reserved),
                "amount": show(self.change.total), "balanceAfter": self.after.as_dict()}


@dataclass
class Statement:
    user_id: str
    since: datetime | None
    until: datetime | None
    opening: Balance
    movements: list[Movement] = field(default_factory=list)
    current: Balance | None = None  # the projection, read in the same snapshot (only without an end)

    @property
    def closing(self) -> Balance:
        return self.movements[-1].after if self.movements else self.opening

    def as_dict(self) -> dict[str, Any]:
        show = amounts.format_balance
        credits = sum((m.change.total for m in self.movements if m.change.total > 0), Decimal(0))
        debits = sum((m.change.total for m in self.movements if m.change.total < 0), Decimal(0))
        return {"userId": self.user_id, "currency": "USD",
                "from": iso(self.since) if self.since else None, "to": iso(self.until) if self.until else None,
                "openingBalance": self.opening.as_dict(), "movements": [m.as_dict() for m in self.movements],
                "closingBalance": self.closing.as_dict(),
                "totals": {"credits": show(credits), "debits": show(debits), "net": show(credits + debits),
                           "count": len(self.movements)},
                "matchesBalance": None if self.current is None else self.current == self.closing}

    def to_csv(self) -> str:
        """The same statement as CSV: an opening line, one line per movement, a closing line."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
        writer.writeheader()
        writer.writerow({"line": "OPENING", "occurredAt": iso(self.since) if self.since else "",
                         **self.opening.as_dict()})
        for m in self.movements:
            row = m.as_dict()
            after = row.pop("balanceAfter")
            row = {**row, "reference": _cell(row["reference"]), "description": _cell(row["description"])}
            writer.writerow({"line": "MOVEMENT", **{k: v for k, v in row.items() if v is not None}, **after})
        writer.writerow({"line": "CLOSING", "occurredAt": iso(self.until) if self.until else "",
                         **self.closing.as_dict()})
        return out.getvalue()


def _cell(value: str | None) -> str | None:
    """Free text a spreadsheet would run as a formula is prefixed with a quote (CSV injection)."""
    if value and value[0] in "=+-@\t\r":
        return "'" + value
    return value


def build(engine: Any, user_id: str, *, since: datetime | None = None, until: datetime | None = None) -> Statement:
    """The statement of ``user_id`` for [since, until), read in one repeatable-read snapshot."""
    with session.transaction(engine) as conn:
        conn.exec_driver_sql(session.SNAPSHOT)
        return read(conn, user_id, since, until)


def read(conn: Any, user_id: str, since: datetime | None, until: datetime | None) -> Statement:
    """The statement, read on ``conn`` (whose transaction should be a ``session.SNAPSHOT``)."""
    current = statements_db.current_balance(conn, user_id)
    if current is None:
        raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")
    start = statements_db.sums_before(conn, user_id, since)
    rows = statements_db.movements(conn, user_id, since, until)
    statement = Statement(user_id, since, until, Balance(start.available, start.reserved),
                          current=Balance(current.available, current.reserved) if until is None else None)
    running = statement.opening
    for row in rows:
        change = Balance(row.available, row.reserved)
        running = running + change
        statement.movements.append(Movement(row.id, row.created_at, row.kind, row.reference, row.description,
                                            change, running))
    return statement
