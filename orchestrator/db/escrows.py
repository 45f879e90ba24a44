"""Escrow rows: one live escrow per order (a discarded deploy leaves its row, marked DISCARDED)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Select, bindparam, func, insert, select, update

from orchestrator.db.prepared import Query
from orchestrator.db.tables import escrows


@dataclass(frozen=True)
class Escrow:
    id: str
    order_id: str
    trustless_contract_id: str | None
    status: str
    amount: Decimal
    funded_at: datetime | None
    released_at: datetime | None
    refunded_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: WALLET: the buyer's wallet funds and approves; TREASURY: a platform treasury account does (decision 25).
    funding_mode: str = "WALLET"
    treasury_account: str | None = None
    funder_account: str | None = None


def to_escrow(row: Any) -> Escrow:
    r = row._mapping
    return Escrow(r["id"], r["order_id"], r["trustless_contract_id"], r["status"], r["amount"], r["funded_at"],
                  r["released_at"], r["refunded_at"], r["created_at"], r["updated_at"], r["funding_mode"],
                  r["treasury_account"], r["funder_account"])


#: An order's live escrow (read with the order by ``GET /orders/{id}``).
_LIVE = select(escrows).where(escrows.c.order_id == bindparam("order_id"), escrows.c.status != "DISCARDED")
OF_ORDER = Query(_LIVE)


def of_order(order_id: str) -> Select:
    return OF_ORDER.bind(order_id=order_id)  # type: ignore[no-any-return]


# Read by the escrow's commands and chain steps: compiled once, run straight on psycopg (issue 16).
_OF_ORDER_FOR_UPDATE = Query(_LIVE.with_for_update())
_BY_ID = Query(select(escrows).where(escrows.c.id == bindparam("escrow_id")))
_BY_ID_FOR_UPDATE = Query(select(escrows).where(escrows.c.id == bindparam("escrow_id")).with_for_update())


def live_for_order(conn: Connection, order_id: str, *, for_update: bool = False) -> Escrow | None:
    row = (_OF_ORDER_FOR_UPDATE if for_update else OF_ORDER).run(conn, order_id=order_id).fetchone()
    return to_escrow(row) if row else None


def get(conn: Connection, escrow_id: str, *, for_update: bool = False) -> Escrow | None:
    row = (_BY_ID_FOR_UPDATE if for_update else _BY_ID).run(conn, escrow_id=escrow_id).fetchone()
    return to_escrow(row) if row else None


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(escrows).values(**values))


def set_status(conn: Connection, escrow_id: str, *, expected: str, status: str, **values: Any) -> bool:
    """Compare-and-set of the escrow's status."""
    result = conn.execute(update(escrows).where(escrows.c.id == escrow_id, escrows.c.status == expected)
                          .values(status=status, updated_at=func.now(), **values))
    return bool(result.rowcount)
