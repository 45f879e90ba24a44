"""Leader election for singleton processes (monitor, scheduler): a session-level advisory lock."""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, text
from sqlalchemy import exc as sa_exc

from orchestrator.db import session

log = logging.getLogger(__name__)

#: Advisory lock keys of the singleton processes.
SCHEDULER_LOCK = 0x0FFE_1001
MONITOR_LOCK = 0x0FFE_1002


def try_lead(engine: Engine, key: int) -> Connection | None:
    """A connection holding ``key`` while it stays open, or ``None`` when another process leads or the
    database does not answer. A standby waiting through a restart, a failover or a full connection table
    must not exit: under honcho its exit would stop every other role of the host."""
    try:
        conn = engine.connect()
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
        log.warning("PostgreSQL does not answer yet (%s); trying to lead again shortly", session.first_line(error))
        return None
    try:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
            return conn
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        conn.invalidate()
    conn.close()
    return None


def still_leading(conn: Connection) -> bool:
    """Whether the leader's connection is alive (a lost connection releases the lock)."""
    try:
        conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def step_down(conn: Connection) -> None:
    """Give up the lead. The lock belongs to the database session, and a closed pooled connection keeps
    its session, so unlock first (or discard the connection when it is already broken)."""
    try:
        conn.execute(text("SELECT pg_advisory_unlock_all()"))
    except Exception:
        conn.invalidate()
    conn.close()
