"""Reads behind /metrics and /health/detailed (backlogs and their ages) and the scheduler's figures."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Select, func, select, text
from sqlalchemy.dialects.postgresql import insert

from orchestrator.db.tables import operation_figures

#: Counts and ages (seconds) of what is waiting, in one round trip; each part uses a partial index.
BACKLOG = text("""
SELECT
  (SELECT count(*) FROM commands WHERE status = 'PENDING') AS commands_pending,
  (SELECT extract(epoch FROM now() - min(created_at)) FROM commands WHERE status = 'PENDING')
      AS oldest_command_seconds,
  (SELECT count(*) FROM chain_steps WHERE status IN ('PENDING', 'SIGNED')) AS chain_steps_open,
  (SELECT extract(epoch FROM now() - min(created_at)) FROM chain_steps WHERE status IN ('PENDING', 'SIGNED'))
      AS oldest_chain_step_seconds,
  (SELECT count(*) FROM outbox WHERE position IS NULL) AS outbox_unrelayed,
  (SELECT extract(epoch FROM now() - min(occurred_at)) FROM outbox WHERE position IS NULL)
      AS outbox_lag_seconds,
  (SELECT count(*) FROM deposits WHERE status = 'PENDING') AS deposits_pending,
  (SELECT extract(epoch FROM now() - min(created_at)) FROM deposits WHERE status = 'PENDING')
      AS oldest_deposit_seconds,
  (SELECT value FROM cursors WHERE name = :cursor) AS monitor_cursor
""")


def backlog(cursor_name: str) -> Any:
    return BACKLOG.bindparams(cursor=cursor_name)


def put_figures(conn: Connection, name: str, figures: dict[str, Any]) -> None:
    conn.execute(insert(operation_figures).values(name=name, figures=figures).on_conflict_do_update(
        index_elements=["name"], set_={"figures": figures, "measured_at": func.now()}))


def figures(name: str) -> Select:
    """The figures and their age in seconds."""
    return select(operation_figures.c.figures,
                  func.extract("epoch", func.now() - operation_figures.c.measured_at).label("age")).where(
        operation_figures.c.name == name)
