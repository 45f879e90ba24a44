"""Idempotency records (spec api.md §1.10): one row per (credential scope, key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Delete, Insert, Select, Update, and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert

from orchestrator.db.tables import commands
from orchestrator.db.tables import idempotency_keys as keys


@dataclass(frozen=True)
class Record:
    scope: str
    key: str
    fingerprint: str
    state: str
    command_id: str | None
    response_status: int | None
    response_body: dict[str, Any] | None
    created_at: datetime


def to_record(row: Any) -> Record:
    r = row._mapping
    return Record(r["scope"], r["key"], r["fingerprint"], r["state"], r["command_id"], r["response_status"],
                  r["response_body"], r["created_at"])


def claim(scope: str, key: str, fingerprint: str) -> Insert:
    """Insert an in-progress record unless one exists; ``RETURNING`` tells whether we won."""
    return (insert(keys).values(scope=scope, key=key, fingerprint=fingerprint, state="IN_PROGRESS")
            .on_conflict_do_nothing().returning(keys.c.key))


def get(scope: str, key: str) -> Select:
    return select(keys).where(keys.c.scope == scope, keys.c.key == key)


def attach_command(scope: str, key: str, command_id: str) -> Update:
    return update(keys).where(keys.c.scope == scope, keys.c.key == key).values(command_id=command_id)


def complete(scope: str, key: str, *, state: str, status: int, body: dict[str, Any]) -> Update:
    return update(keys).where(keys.c.scope == scope, keys.c.key == key).values(
        state=state, response_status=status, response_body=body, completed_at=func.now())


def release(scope: str, key: str) -> Delete:
    """Forget a claim so the key can run afresh: only when it has no command, or its command failed.

    A request can fail after its command was recorded (the database dropped while it waited, or while
    it read the outcome): that command runs, or ran, all the same, so a retry with the same key must
    find it and never start a second one. A failed command (or a failed ledger flow) changed nothing,
    so its key may run again (api.md §1.10: a 5xx releases the key).
    """
    kept = select(commands.c.id).where(
        commands.c.id == keys.c.command_id, commands.c.status != "FAILED",
        func.coalesce(commands.c.flow_status, "") != "FAILED")
    return delete(keys).where(keys.c.scope == scope, keys.c.key == key, ~kept.exists())


def prune(conn: Connection, *, older_than: datetime) -> int:
    """Forget records completed before ``older_than`` (24 h retention), and abandoned claims."""
    result = conn.execute(delete(keys).where(
        func.coalesce(keys.c.completed_at, keys.c.created_at) < older_than,
        and_(keys.c.state != "IN_PROGRESS") | keys.c.command_id.is_(None)))
    return result.rowcount or 0
