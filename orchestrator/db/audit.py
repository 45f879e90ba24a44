"""Audit log rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from orchestrator.db.tables import audit_log


def insert(conn: Connection, **values: Any) -> None:
    conn.execute(audit_log.insert().values(**values))
