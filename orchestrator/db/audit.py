"""Audit log rows: inserted with their change, chained by the relay, never updated or deleted.

The table refuses UPDATE and DELETE (trigger ``audit_log_append_only``, migration 0009) except the
relay's one-time chain stamp, which ``stamp`` writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Select, and_, func, or_, select, text, tuple_, update

from orchestrator.db.prepared import insert_of
from orchestrator.db.tables import audit_log, relay_state

#: The columns an entry's hash covers (everything but the chain stamp and ``seq``).
CONTENT_COLUMNS = ("id", "occurred_at", "action", "resource_type", "resource_id", "user_id", "payload_before",
                   "payload_after", "actor_type", "actor_id", "result", "error", "idempotency_key",
                   "correlation_id", "request_id")
_HEAD = "audit"


#: Built once and executed with the row's values: ``insert().values(...)`` per entry coerced every value
#: and hashed a new cache key, a sixth of a credit's worker CPU with the outbox's insert (issue 16 profile).
INSERT = audit_log.insert()


def insert_statement(**values: Any) -> Insert:
    """One entry; usable on a sync or an async connection."""
    return INSERT.values(**values)


#: The same insert compiled once for the worker's transactions, executed straight on psycopg (issue 16).
_INSERT = insert_of(audit_log, ("id", "action", "resource_type", "resource_id", "user_id", "payload_before",
                                "payload_after", "actor_type", "actor_id", "result", "error", "idempotency_key",
                                "correlation_id", "request_id"))


def insert(conn: Connection, **values: Any) -> None:
    _INSERT.run(conn, **values)


# --- the chain --------------------------------------------------------------------------------------

def head_for_update(conn: Connection) -> tuple[int, str | None]:
    """The last chained position (row-locked) and that entry's hash (None: empty, or the entry is gone),
    in one statement."""
    row = conn.execute(_HEAD_FOR_UPDATE).one()
    return row[0], row[1]


_HEAD_FOR_UPDATE = (select(relay_state.c.last_position, audit_log.c.entry_hash)
                    .select_from(relay_state.outerjoin(audit_log, audit_log.c.position == relay_state.c.last_position))
                    .where(relay_state.c.name == _HEAD).with_for_update(of=relay_state))


def head(conn: Connection) -> int:
    return conn.execute(select(relay_state.c.last_position).where(relay_state.c.name == _HEAD)).scalar_one()


def set_head(conn: Connection, position: int) -> None:
    conn.execute(update(relay_state).where(relay_state.c.name == _HEAD).values(last_position=position))


def unchained(conn: Connection, batch: int) -> Sequence[Any]:
    """Committed entries not yet chained, in insertion order (the caller holds the relay lock)."""
    cols = [audit_log.c[name] for name in CONTENT_COLUMNS]
    return conn.execute(select(*cols).where(audit_log.c.position.is_(None))
                        .order_by(audit_log.c.seq).limit(batch)).mappings().all()


def stamp(conn: Connection, stamps: list[dict[str, Any]]) -> None:
    """The one-time chain stamp of a batch, in one statement (the only UPDATE the trigger allows)."""
    conn.execute(text(
        "UPDATE audit_log SET position = v.position, prev_hash = v.prev, entry_hash = v.hash, "
        "chained_at = clock_timestamp() FROM unnest(CAST(:ids AS text[]), CAST(:positions AS bigint[]), "
        "CAST(:prevs AS text[]), CAST(:hashes AS text[])) AS v(id, position, prev, hash) WHERE audit_log.id = v.id"),
        {"ids": [s["id"] for s in stamps], "positions": [s["position"] for s in stamps],
         "prevs": [s["prev_hash"] for s in stamps], "hashes": [s["entry_hash"] for s in stamps]})


def unchained_count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(audit_log).where(audit_log.c.position.is_(None))).scalar_one()


def chained_after(conn: Connection, position: int, batch: int) -> Sequence[Any]:
    cols = [audit_log.c[name] for name in CONTENT_COLUMNS]
    return conn.execute(select(*cols, audit_log.c.position, audit_log.c.prev_hash, audit_log.c.entry_hash)
                        .where(audit_log.c.position > position).order_by(audit_log.c.position)
                        .limit(batch)).mappings().all()


# --- reads (GET /audit/logs) ------------------------------------------------------------------------

def page(*, resource_type: str | None = None, resource_id: str | None = None, action: str | None = None,
         user_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
         after: tuple[datetime, str] | None = None, limit: int = 20) -> Select:
    """Newest first (``occurred_at`` desc, ``id`` desc); ``after`` is the cursor entry's (occurred_at, id).

    ``userId`` matches the entry's user, and entries whose resource is that user.
    """
    stmt = select(audit_log)
    if resource_type is not None:
        stmt = stmt.where(func.lower(audit_log.c.resource_type) == resource_type.lower())
    if resource_id is not None:
        stmt = stmt.where(audit_log.c.resource_id == resource_id)
    if action is not None:
        stmt = stmt.where(audit_log.c.action == action)
    if user_id is not None:
        stmt = stmt.where(or_(audit_log.c.user_id == user_id, audit_log.c.resource_id == user_id))
    if since is not None:
        stmt = stmt.where(audit_log.c.occurred_at >= since)
    if until is not None:  # exclusive: the caller turns an inclusive ``to`` into the next instant
        stmt = stmt.where(audit_log.c.occurred_at < until)
    if after is not None:
        stmt = stmt.where(tuple_(audit_log.c.occurred_at, audit_log.c.id) < tuple_(*after))
    return stmt.order_by(audit_log.c.occurred_at.desc(), audit_log.c.id.desc()).limit(limit + 1)


def cursor_of(entry_id: str) -> Select:
    return select(audit_log.c.occurred_at, audit_log.c.id).where(audit_log.c.id == entry_id)


def of_resource(resource_id: str) -> Select:
    return select(audit_log).where(and_(audit_log.c.resource_id == resource_id)).order_by(audit_log.c.seq)
