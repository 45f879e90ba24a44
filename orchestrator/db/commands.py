"""Command rows: the durable queue entry behind every write request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Select, bindparam, func, literal_column, select, text, true, update

from orchestrator.db import users as users_db
from orchestrator.db.prepared import Query, insert_of
from orchestrator.db.tables import commands

#: Channel notified (``notify_done``) when a command (or the ledger work it started) finishes; web
#: processes wake the request waiting on it.
DONE_CHANNEL = "command_done"


@dataclass(frozen=True)
class Command:
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    actor_type: str
    actor_id: str | None
    request_id: str | None
    idempotency_key: str | None
    attempts: int
    created_at: datetime


def to_command(row: Any) -> Command:
    r = row._mapping
    return Command(r["id"], r["kind"], r["payload"], r["status"], r["result"], r["error"], r["actor_type"],
                   r["actor_id"], r["request_id"], r["idempotency_key"], r["attempts"], r["created_at"])


def row(*, id: str, kind: str, payload: dict[str, Any], actor_type: str, actor_id: str | None,
        request_id: str | None, idempotency_key: str | None) -> dict[str, Any]:
    return {"id": id, "kind": kind, "payload": payload, "actor_type": actor_type, "actor_id": actor_id,
            "request_id": request_id, "idempotency_key": idempotency_key}


_COLUMNS = ("id", "kind", "payload", "actor_type", "actor_id", "request_id", "idempotency_key")


def insert_on(subject: Select) -> Select:
    """The command's ``INSERT``, made on the condition that ``subject`` (a one-row read, its id bound as
    ``subject_id``) finds its row, in one statement that answers with that row as it stood when the
    command was recorded; no row when the subject does not exist, and then nothing is inserted.

    Why: a write on a named resource (a user's balance operation) must answer 404 for an unknown one
    before anything is recorded, and a ``202`` shows the resource as it stands (api.md §1.12). A read
    first and then the insert cost a database transaction and a round trip of their own on every such
    request (issue 16: the third transaction of a credit); here one statement decides and reads.
    """
    found = subject.cte("subject")
    source = select(*(bindparam(name, type_=commands.c[name].type) for name in _COLUMNS)).select_from(found)
    recorded = commands.insert().from_select(list(_COLUMNS), source).returning(commands.c.id).cte("recorded")
    return select(found).select_from(found.join(recorded, true()))


#: The web tier records a command with one of these, compiled once and run on its psycopg pool (a
#: command with an idempotency key, whose link commits with it, runs the same statement in a transaction).
RECORD = insert_of(commands, _COLUMNS, commands.c.id)
#: A command on a user (a balance operation): recorded only if the user exists, answering with the user.
ON_USER = Query(insert_on(users_db.subject()))


def insert(*, id: str, kind: str, payload: dict[str, Any], actor_type: str,
           actor_id: str | None, request_id: str | None, idempotency_key: str | None) -> Insert:
    return commands.insert().values(row(id=id, kind=kind, payload=payload, actor_type=actor_type,
                                        actor_id=actor_id, request_id=request_id, idempotency_key=idempotency_key))


def by_id(command_id: str) -> Select:
    return select(commands).where(commands.c.id == command_id)


#: Read by every waited write once its command's notification came (``web/enqueue.py``).
STATUS_OF = Query(select(commands.c.status, commands.c.result, commands.c.error, commands.c.flow_status,
                         commands.c.flow_error).where(commands.c.id == bindparam("command_id")))


def status_of(command_id: str) -> Select:
    return STATUS_OF.bind(command_id=command_id)  # type: ignore[no-any-return]


def start_flow(conn: Connection, command_id: str) -> None:
    """The command's ledger work continues after it commits: its request waits for ``finish_flow``."""
    conn.execute(update(commands).where(commands.c.id == command_id).values(flow_status="RUNNING"))


def finish_flow(conn: Connection, command_id: str, *, failed: dict[str, Any] | None = None) -> None:
    conn.execute(update(commands).where(commands.c.id == command_id, commands.c.flow_status == "RUNNING")
                 .values(flow_status="FAILED" if failed else "DONE", flow_error=failed))


def running_flows(conn: Connection, resource_id: str) -> list[str]:
    """Commands whose result is ``resource_id`` and whose flow still runs (index ix_commands_running_flow)."""
    # literals, not parameters, where the partial index's predicate and expression must be matched
    return list(conn.execute(select(commands.c.id).where(
        commands.c.flow_status == literal_column("'RUNNING'"),
        commands.c.result.op("->>")(literal_column("'id'")) == resource_id)).scalars())


# Every command runs these: compiled once, executed straight on psycopg (``Query.run``, issue 16).
_LOCK = Query(select(commands).where(commands.c.id == bindparam("command_id")).with_for_update())
#: Locks by updating: the attempt is counted in the command's own transaction (``commands.execute``).
_LOCK_COUNTING = Query(update(commands).where(commands.c.id == bindparam("command_id"))
                       .values(attempts=commands.c.attempts + 1).returning(*commands.c))
_COUNT_ATTEMPT = (update(commands).where(commands.c.id == bindparam("command_id"))
                  .values(attempts=commands.c.attempts + 1).returning(commands.c.attempts))
_FINISH = Query(update(commands).where(commands.c.id == bindparam("command_id"), commands.c.status == "PENDING")
                .values(status=bindparam("new_status"),
                        result=bindparam("new_result", type_=commands.c.result.type),
                        error=bindparam("new_error", type_=commands.c.error.type), completed_at=func.now()))


#: ``pg_notify`` refuses a payload of 8,000 bytes or more; a state past this is announced by its id alone.
NOTE_LIMIT = 7_900
_NOTIFY_DONE = Query(text(
    "SELECT pg_notify(:channel, CASE WHEN octet_length(note) <= :limit THEN note "
    "ELSE json_build_object('id', id)::text END) FROM (SELECT id, json_build_object("
    "'id', id, 'status', status, 'result', result, 'error', error, 'flowStatus', flow_status, "
    "'flowError', flow_error)::text AS note FROM commands WHERE id = :command_id) AS state"))


def notify_done(conn: Connection, command_id: str) -> None:
    """Wake the command's waiting request when this transaction commits, with the command's state as
    the transaction leaves it (JSON: ``id``, ``status``, ``result``, ``error``, ``flowStatus``,
    ``flowError``), so the request answers without reading the row again (issue 16: one database
    transaction and one round trip fewer per waited command). A state too long for a notification
    carries its ``id`` alone, and the request reads the row."""
    _NOTIFY_DONE.run(conn, channel=DONE_CHANNEL, limit=NOTE_LIMIT, command_id=command_id)


def lock(conn: Connection, command_id: str, *, count: bool = False) -> Command | None:
    """The command, row-locked for this transaction, so two deliveries never run it together; with
    ``count``, its attempt counter incremented in the same statement."""
    row = (_LOCK_COUNTING if count else _LOCK).run(conn, command_id=command_id).fetchone()
    return to_command(row) if row else None


def count_attempt(conn: Connection, command_id: str) -> int:
    """Increment and return the attempt counter (committed on its own, so crashes are counted)."""
    return conn.execute(_COUNT_ATTEMPT, {"command_id": command_id}).scalar() or 0


def finish(conn: Connection, command_id: str, *, status: str, result: dict[str, Any] | None = None,
           error: dict[str, Any] | None = None) -> None:
    _FINISH.run(conn, command_id=command_id, new_status=status, new_result=result, new_error=error)


def stale_pending(conn: Connection, *, older_than: datetime, limit: int = 500) -> list[str]:
    """Pending commands not touched since ``older_than``: their message may have been lost."""
    rows = conn.execute(select(commands.c.id).where(
        commands.c.status == "PENDING",
        func.coalesce(commands.c.published_at, commands.c.created_at) < older_than)
        .order_by(commands.c.created_at).limit(limit)).scalars().all()
    if rows:
        conn.execute(update(commands).where(commands.c.id.in_(rows)).values(published_at=func.now()))
    return list(rows)


def pending_count() -> Select:
    return select(func.count()).select_from(commands).where(commands.c.status == "PENDING")
