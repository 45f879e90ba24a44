"""Outbox rows: inserted with their change, numbered by the relay, read by the SSE stream."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Select, Text, and_, bindparam, cast, delete, func, select, text, update

from orchestrator.db.prepared import Query, insert_of
from orchestrator.db.tables import outbox, relay_state
from orchestrator.events import Event

#: The relay's advisory lock key: one relay numbers events at a time, so positions never interleave.
RELAY_LOCK = 0x0FFE_0001


#: Compiled once, executed straight on psycopg with each event's values (``Query.run``, issue 16).
_INSERT = insert_of(outbox, ("event_id", "event_type", "aggregate_type", "aggregate_id", "payload", "metadata"))


def insert(conn: Connection, event: Event) -> None:
    _INSERT.run(conn, event_id=event.event_id, event_type=event.event_type, aggregate_type=event.aggregate_type,
                aggregate_id=event.aggregate_id, payload=event.payload, metadata=event.metadata)


def lock_relay(conn: Connection) -> int:
    """Take the relay lock (a transaction-level advisory lock, waited for) and return the last position
    numbered so far: only one relay numbers at a time, so positions never interleave, and nothing moves
    the position while this transaction holds the lock."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK})
    return int(conn.execute(_LAST_POSITION).scalar_one())


_LAST_POSITION = select(relay_state.c.last_position).where(relay_state.c.name == "outbox")


def assign_positions(conn: Connection, *, last: int, batch: int = 5000) -> int | None:
    """Number committed, unnumbered events gap-free in the order they became visible, after ``last``.

    The caller holds the relay lock and read ``last`` under it (``lock_relay``). Each batch is a
    statement taken after the lock, whose snapshot sees everything committed before the caller asked;
    a batch shorter than ``batch`` was the last. A row with a lower id that commits later simply gets a
    later position. Returns the highest position assigned, if any.
    """
    top = last
    while True:
        rows = conn.execute(text(
            "WITH pending AS (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outbox "
            "WHERE position IS NULL ORDER BY id LIMIT :batch) "
            "UPDATE outbox SET position = :last + pending.n, relayed_at = clock_timestamp() "
            "FROM pending WHERE outbox.id = pending.id RETURNING outbox.position"),
            {"batch": batch, "last": top}).scalars().all()
        if rows:
            top = max(rows)
        if len(rows) < batch:
            break
    if top == last:
        return None
    conn.execute(update(relay_state).where(relay_state.c.name == "outbox").values(last_position=top))
    return top


#: Numbered events after ``after`` in stream order, as the SSE stream sends them: the envelope's strings,
#: its time already in the API's format (``events.iso``: UTC, milliseconds truncated, ``Z``) and the JSONB
#: payload and metadata as PostgreSQL's text, so no row's JSON is parsed only to be encoded again
#: (``events.envelope_json``). Issue 16: the replay spent most of its time per event in SQLAlchemy's
#: result rows, two JSON parses, the envelope dict, ``iso`` and ``json.dumps``.
STREAM_AFTER = Query(
    select(outbox.c.position, outbox.c.event_id, outbox.c.event_type, outbox.c.aggregate_type,
           outbox.c.aggregate_id,
           func.to_char(func.timezone("UTC", outbox.c.occurred_at), 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           cast(outbox.c.payload, Text), cast(outbox.c.metadata, Text))
    .where(outbox.c.position > bindparam("after"))
    .order_by(outbox.c.position).limit(bindparam("limit")))


def position_of_event(event_id: str) -> Select:
    return select(outbox.c.position).where(outbox.c.event_id == event_id)


def last_position_before(moment: datetime) -> Select:
    """The highest position relayed at or before ``moment`` (ISO-time replay, DESIGN decision 14)."""
    return select(func.coalesce(func.max(outbox.c.position), 0)).where(
        and_(outbox.c.position.is_not(None), outbox.c.relayed_at <= moment))


def bounds() -> Select:
    """Oldest and newest retained positions."""
    return select(func.min(outbox.c.position), func.max(outbox.c.position)).where(
        outbox.c.position.is_not(None))


def unrelayed_count() -> Select:
    return select(func.count()).select_from(outbox).where(outbox.c.position.is_(None))


def prune(conn: Connection, *, older_than: datetime, keep_last: int = 1000) -> int:
    """Drop relayed events past retention, always keeping the newest ``keep_last`` (spec events.md §2.4)."""
    newest = conn.execute(select(func.max(outbox.c.position))).scalar() or 0
    result = conn.execute(delete(outbox).where(and_(
        outbox.c.position.is_not(None), outbox.c.relayed_at < older_than,
        outbox.c.position <= newest - keep_last)))
    return result.rowcount or 0
