"""Leader election for singleton processes (monitor, scheduler): a session-level advisory lock."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

#: Advisory lock keys of the singleton processes.
SCHEDULER_LOCK = 0x0FFE_1001
MONITOR_LOCK = 0x0FFE_1002


def try_lead(engine: Engine, key: int) -> Connection | None:
    """A connection holding ``key`` while it stays open, or ``None`` when another process leads."""
    conn = engine.connect()
    conn.execution_options(isolation_level="AUTOCOMMIT")
    if conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar():
        return conn
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
