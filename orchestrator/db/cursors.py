"""Named cursors (the monitor's Horizon paging token, per-wallet reconciliation cursors)."""

from __future__ import annotations

from sqlalchemy import Connection, Delete, delete, func, select
from sqlalchemy.dialects.postgresql import insert

from orchestrator.db.tables import cursors


def get(conn: Connection, name: str) -> str | None:
    return conn.execute(select(cursors.c.value).where(cursors.c.name == name)).scalar()


def put(conn: Connection, name: str, value: str) -> None:
    conn.execute(insert(cursors).values(name=name, value=value).on_conflict_do_update(
        index_elements=["name"], set_={"value": value, "updated_at": func.now()}))


def delete_prefix(prefix: str) -> Delete:
    """Forget every cursor whose name starts with ``prefix`` (a network reset voids them)."""
    return delete(cursors).where(cursors.c.name.startswith(prefix, autoescape=True))
