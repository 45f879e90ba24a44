"""Top-up rows; the status column is written by compare-and-set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Interval, Select, func, insert, select, tuple_, update

from orchestrator.db.tables import OPEN_TOPUP_STATUSES, topups


@dataclass(frozen=True)
class TopUp:
    id: str
    user_id: str
    amount: Decimal
    currency: str
    status: str
    airtm_payin_id: str | None
    confirmation_uri: str | None
    return_url: str
    cancel_url: str
    expires_at: datetime | None
    failure_reason: str | None
    description: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    airtm_fee: Decimal | None = None


def to_topup(row: Any) -> TopUp:
    r = row._mapping
    return TopUp(*(r[name] for name in TopUp.__dataclass_fields__))


def by_id(topup_id: str) -> Select:
    return select(topups).where(topups.c.id == topup_id)


def get(conn: Connection, topup_id: str, *, for_update: bool = False) -> TopUp | None:
    stmt = by_id(topup_id)
    row = conn.execute(stmt.with_for_update() if for_update else stmt).first()
    return to_topup(row) if row else None


def id_for_payin(conn: Connection, payin_id: str) -> str | None:
    return conn.execute(select(topups.c.id).where(topups.c.airtm_payin_id == payin_id)).scalar()


def create(conn: Connection, **values: Any) -> None:
    conn.execute(insert(topups).values(**values))


def update_fields(conn: Connection, topup_id: str, **values: Any) -> None:
    conn.execute(update(topups).where(topups.c.id == topup_id).values(updated_at=func.now(), **values))


def set_status(conn: Connection, topup_id: str, *, expected: str, status: str, **values: Any) -> bool:
    result = conn.execute(update(topups).where(topups.c.id == topup_id, topups.c.status == expected)
                          .values(status=status, updated_at=func.now(), **values))
    return bool(result.rowcount)


def page(*, filters: dict[str, Any], after: tuple[datetime, str] | None, limit: int) -> Select:
    stmt = select(topups)
    for name, column in (("userId", topups.c.user_id), ("status", topups.c.status)):
        if filters.get(name) is not None:
            stmt = stmt.where(column == filters[name])
    if after is not None:
        stmt = stmt.where(tuple_(topups.c.created_at, topups.c.id) < tuple_(*after))
    return stmt.order_by(topups.c.created_at.desc(), topups.c.id.desc()).limit(limit + 1)


def cursor_of(topup_id: str) -> Select:
    return select(topups.c.created_at, topups.c.id).where(topups.c.id == topup_id)


def open_untouched(conn: Connection, *, period: timedelta, limit: int = 200) -> list[str]:
    """Open top-ups not updated for ``period``, or for a tenth of their age if longer (an old pay-in
    waiting for its buyer is re-read less and less often): the periodic refresh's work list."""
    # a custom "/": SQLAlchemy's Interval type has no division (a deprecation warning, an error later)
    age = (func.now() - topups.c.created_at).self_group()
    quiet = func.greatest(period, age.op("/", return_type=Interval())(10))
    return list(conn.execute(select(topups.c.id).where(topups.c.status.in_(OPEN_TOPUP_STATUSES),
                                                       topups.c.updated_at < func.now() - quiet)
                             .order_by(topups.c.updated_at).limit(limit)).scalars())


def touch(conn: Connection, ids: list[str]) -> None:
    """Mark refreshed so the next sweep waits another period for them."""
    if ids:
        conn.execute(update(topups).where(topups.c.id.in_(ids)).values(updated_at=func.now()))
