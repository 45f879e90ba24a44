"""Order and milestone rows; the status column is written only by compare-and-set."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Numeric,
    Select,
    Table,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from orchestrator.db.prepared import Query, Row
from orchestrator.db.tables import disputes, escrows, milestones, orders


@dataclass(frozen=True)
class Order:
    id: str
    client_order_ref: str | None
    buyer_id: str
    seller_id: str
    amount: Decimal
    currency: str
    status: str
    final_status: str | None
    title: str
    description: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    settlement: dict[str, Any] | None = None
    #: How the escrow is funded: the buyer's wallet (WALLET) or the platform treasury (TREASURY).
    funding_mode: str = "WALLET"


@dataclass(frozen=True)
class Milestone:
    id: str
    order_id: str
    milestone_ref: str
    title: str
    amount: Decimal
    status: str
    completed_at: datetime | None
    created_at: datetime


def to_order(row: Any) -> Order:
    r = row._mapping
    return Order(r["id"], r["client_order_ref"], r["buyer_id"], r["seller_id"], r["amount"], r["currency"],
                 r["status"], r["final_status"], r["title"], r["description"], r["metadata"], r["created_at"],
                 r["updated_at"], r["closed_at"], r["settlement"], r["funding_mode"])


def to_milestone(row: Any) -> Milestone:
    r = row._mapping
    return Milestone(r["id"], r["order_id"], r["milestone_ref"], r["title"], r["amount"], r["status"],
                     r["completed_at"], r["created_at"])


BY_ID = Query(select(orders).where(orders.c.id == bindparam("order_id")))


# --- an order as the API shows it: the order with its milestones, live escrow and dispute, in one statement


def _json_object(table: Table, names: tuple[str, ...] | None = None) -> ColumnElement[Any]:
    """A row of ``table`` as a JSON object of its columns (``names``, or all), amounts as text (a JSON
    number would pass through a float) and times in ISO 8601; ``related`` turns it back into a row."""
    parts: list[Any] = []
    for column in table.c if names is None else (table.c[name] for name in names):
        value = cast(column, Text) if isinstance(column.type, Numeric) else column
        parts += [literal_column(f"'{column.name}'"), value]
    return func.json_build_object(*parts)


#: The dispute's columns an order view shows (api.md §2.8's summary). Only these: the JSON columns hold no
#: value a client wrote (``evidence`` is one), so they are parsed by orjson (``prepared.open_pool``).
DISPUTE_SUMMARY = ("id", "status", "opened_by", "reason", "resolution_decision")
#: The order's milestones in creation order, its live escrow and its dispute, as JSON columns beside the
#: order's own: ``GET /orders/{id}`` and a list page read everything in one statement and one round trip
#: (py-spy, issue 16: the related reads were a third of a page's web CPU, mostly psycopg's async waits).
RELATED = (
    select(func.coalesce(func.json_agg(aggregate_order_by(_json_object(milestones), milestones.c.position)),
                         literal_column("'[]'::json")))
    .where(milestones.c.order_id == orders.c.id).scalar_subquery().label("milestones_json"),
    select(_json_object(escrows)).where(escrows.c.order_id == orders.c.id, escrows.c.status != "DISCARDED")
    .limit(1).scalar_subquery().label("escrow_json"),  # at most one live escrow (ix_escrows_live_order)
    select(_json_object(disputes, DISPUTE_SUMMARY)).where(disputes.c.order_id == orders.c.id)
    .limit(1).scalar_subquery().label("dispute_json"),  # at most one dispute per order
)
#: ``GET /orders/{id}``: the order and its related rows (``web/render.py``).
VIEW_BY_ID = Query(select(orders, *RELATED).where(orders.c.id == bindparam("order_id")))


@functools.cache
def _converters(table: Table) -> tuple[tuple[str, Any], ...]:
    return tuple((c.name, Decimal if isinstance(c.type, Numeric) else datetime.fromisoformat)
                 for c in table.c if isinstance(c.type, Numeric | DateTime))


def related(table: Table, value: dict[str, Any]) -> Row:
    """A row of ``table`` from its ``_json_object`` (amounts back to ``Decimal``, times to ``datetime``),
    for the table's ``to_*`` converter."""
    row = Row(value)
    for name, convert in _converters(table):
        if row[name] is not None:
            row[name] = convert(row[name])
    return row


def view_parts(row: Any) -> tuple[list[Row], Row | None, Row | None]:
    """The milestones, escrow and dispute rows a ``VIEW_BY_ID`` or page row carries."""
    escrow, dispute = row._mapping["escrow_json"], row._mapping["dispute_json"]
    return ([related(milestones, m) for m in row._mapping["milestones_json"]],
            related(escrows, escrow) if escrow is not None else None,
            Row(dispute) if dispute is not None else None)  # DISPUTE_SUMMARY: text only


def by_id(order_id: str) -> Select:
    return BY_ID.bind(order_id=order_id)  # type: ignore[no-any-return]


_BY_ID_FOR_UPDATE = Query(select(orders).where(orders.c.id == bindparam("order_id")).with_for_update())


def get(conn: Connection, order_id: str, *, for_update: bool = False) -> Order | None:
    row = (_BY_ID_FOR_UPDATE if for_update else BY_ID).run(conn, order_id=order_id).fetchone()
    return to_order(row) if row else None


def by_client_ref(conn: Connection, ref: str) -> Order | None:
    row = conn.execute(select(orders).where(orders.c.client_order_ref == ref)).first()
    return to_order(row) if row else None


def create(conn: Connection, **values: Any) -> bool:
    """Insert unless ``client_order_ref`` is taken; True when this call created the order."""
    created = conn.execute(pg_insert(orders).values(**values).on_conflict_do_nothing(
        index_elements=["client_order_ref"]).returning(orders.c.id)).first()
    return created is not None


def add_milestones(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(milestones), rows)


def set_status(conn: Connection, order_id: str, *, expected: str, status: str, **values: Any) -> bool:
    """Compare-and-set: move ``expected`` -> ``status``; False when the row was not in ``expected``."""
    result = conn.execute(update(orders).where(orders.c.id == order_id, orders.c.status == expected)
                          .values(status=status, updated_at=func.now(), **values))
    return bool(result.rowcount)


MILESTONES_OF = Query(select(milestones).where(milestones.c.order_id == bindparam("order_id"))
                      .order_by(milestones.c.position))


def milestones_of(order_id: str) -> Select:
    return MILESTONES_OF.bind(order_id=order_id)  # type: ignore[no-any-return]


def milestone_of(order_id: str, ref: str) -> Select:
    return select(milestones).where(milestones.c.order_id == order_id, milestones.c.milestone_ref == ref)


def milestone(conn: Connection, order_id: str, ref: str, *, for_update: bool = False) -> Milestone | None:
    stmt = milestone_of(order_id, ref)
    row = conn.execute(stmt.with_for_update() if for_update else stmt).first()
    return to_milestone(row) if row else None


def milestone_by_id(milestone_id: str) -> Select:
    return select(milestones).where(milestones.c.id == milestone_id)


def complete_milestone(conn: Connection, milestone_id: str) -> None:
    conn.execute(update(milestones).where(milestones.c.id == milestone_id)
                 .values(status="COMPLETED", completed_at=func.now()))


def progress(conn: Connection, order_id: str) -> tuple[int, int]:
    """(completed, total) milestones of an order."""
    row = conn.execute(select(func.count().filter(milestones.c.status == "COMPLETED"), func.count())
                       .where(milestones.c.order_id == order_id)).one()
    return int(row[0]), int(row[1])


def open_milestone_refs(conn: Connection, order_id: str) -> list[str]:
    stmt = (select(milestones.c.milestone_ref)
            .where(milestones.c.order_id == order_id, milestones.c.status != "COMPLETED")
            .order_by(milestones.c.position))
    return list(conn.execute(stmt).scalars())


#: The list filters and the comparison each makes (``GET /orders``'s query names).
_PAGE_FILTERS = {"status": orders.c.status.__eq__, "buyerId": orders.c.buyer_id.__eq__,
                 "sellerId": orders.c.seller_id.__eq__, "clientOrderRef": orders.c.client_order_ref.__eq__,
                 "createdAfter": orders.c.created_at.__ge__, "createdBefore": orders.c.created_at.__le__}


def page(*, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int) -> tuple[Query, dict[str, Any]]:
    """Newest first, ``limit + 1`` rows (the extra one says a next page exists); filters combine with AND.
    The query and its values: one ``Query`` per combination of filters, compiled once (issue 16)."""
    given = {name: filters[name] for name in _PAGE_FILTERS if filters.get(name) is not None}
    params: dict[str, Any] = {"limit": limit + 1, **given}
    if after is not None:
        params |= {"after_created": after[0], "after_id": after[1]}
    return _page_query(frozenset(given), after is not None), params


@functools.cache
def _page_query(names: frozenset[str], after: bool) -> Query:
    stmt = select(orders, *RELATED)  # each order with its related rows (view_parts)
    for name, compare in _PAGE_FILTERS.items():
        if name in names:
            stmt = stmt.where(compare(bindparam(name)))
    if after:
        stmt = stmt.where(tuple_(orders.c.created_at, orders.c.id)
                          < tuple_(bindparam("after_created"), bindparam("after_id")))
    return Query(stmt.order_by(orders.c.created_at.desc(), orders.c.id.desc()).limit(bindparam("limit")))


def cursor_of(order_id: str) -> Select:
    return select(orders.c.created_at, orders.c.id).where(orders.c.id == order_id)
