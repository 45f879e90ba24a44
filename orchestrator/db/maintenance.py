"""The maintenance switch: one durable row."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, func, select, update

from orchestrator.db.prepared import Query
from orchestrator.db.tables import maintenance

#: Read by every web process at most once a second (``web/middlewares.py``), and by the operators.
CURRENT = Query(select(maintenance).where(maintenance.c.id == 1))


def current() -> Select:
    return CURRENT.bind()  # type: ignore[no-any-return]


def set_enabled(conn: Connection, *, message: str, enabled_by: str | None) -> None:
    """Enable, or update the message when already enabled (keeping the first ``enabledAt``)."""
    conn.execute(update(maintenance).where(maintenance.c.id == 1).values(
        enabled=True, message=message, enabled_by=enabled_by,
        enabled_at=func.coalesce(maintenance.c.enabled_at, func.now())))


def set_disabled(conn: Connection) -> Any:
    return conn.execute(update(maintenance).where(maintenance.c.id == 1, maintenance.c.enabled.is_(True))
                        .values(enabled=False, message=None, enabled_at=None, enabled_by=None)).rowcount
