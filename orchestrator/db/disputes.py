"""Dispute rows: at most one per order, ever (a resolved dispute closes its order)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, select, tuple_, update

from orchestrator.db.prepared import Query
from orchestrator.db.tables import disputes


@dataclass(frozen=True)
class Dispute:
    id: str
    order_id: str
    opened_by: str
    reason: str
    evidence: list[str]
    status: str
    assigned_to: str | None
    assignment_notes: str | None
    resolution_decision: str | None
    release_amount: Decimal | None
    refund_amount: Decimal | None
    decision_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    created_at: datetime
    updated_at: datetime


def to_dispute(row: Any) -> Dispute:
    r = row._mapping
    return Dispute(*(r[name] for name in Dispute.__dataclass_fields__))


def by_id(dispute_id: str) -> Select:
    return select(disputes).where(disputes.c.id == dispute_id)


#: An order's dispute (read with the order by ``GET /orders/{id}``).
OF_ORDER = Query(select(disputes).where(disputes.c.order_id == bindparam("order_id")))


def of_order(order_id: str) -> Select:
    return OF_ORDER.bind(order_id=order_id)  # type: ignore[no-any-return]


def get(conn: Connection, dispute_id: str, *, for_update: bool = False) -> Dispute | None:
    stmt = by_id(dispute_id)
    row = conn.execute(stmt.with_for_update() if for_update else stmt).first()
    return to_dispute(row) if row else None


def of_order_now(conn: Connection, order_id: str, *, for_update: bool = False) -> Dispute | None:
    stmt = of_order(order_id)
    row = conn.execute(stmt.with_for_update() if for_update else stmt).first()
    return to_dispute(row) if row else None


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(disputes).values(**values))


def change(conn: Connection, dispute_id: str, **values: Any) -> None:
    conn.execute(update(disputes).where(disputes.c.id == dispute_id).values(updated_at=func.now(), **values))


def page(*, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int) -> Select:
    stmt = select(disputes)
    for name, column in (("orderId", disputes.c.order_id), ("status", disputes.c.status),
                         ("openedBy", disputes.c.opened_by), ("assignedTo", disputes.c.assigned_to)):
        if filters.get(name) is not None:
            stmt = stmt.where(column == filters[name])
    if after is not None:
        stmt = stmt.where(tuple_(disputes.c.created_at, disputes.c.id) < tuple_(*after))
    return stmt.order_by(disputes.c.created_at.desc(), disputes.c.id.desc()).limit(limit + 1)


def cursor_of(dispute_id: str) -> Select:
    return select(disputes.c.created_at, disputes.c.id).where(disputes.c.id == dispute_id)
