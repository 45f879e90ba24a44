"""The write path's web half: record the command, publish it, wait for it (or answer 202).

The command row is committed before the message is sent, and the waiter is registered before the
send, so a fast actor's notification can never be missed. A publish failure loses nothing: the row
stays pending and the scheduler's sweep publishes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from sqlalchemy import Executable

from actors.commands import execute_command
from orchestrator import errors, ids, logs
from orchestrator.commands import Status, check_payload, pending_subject
from orchestrator.db import commands as commands_db
from orchestrator.db import idempotency as idempotency_db
from orchestrator.db import prepared
from orchestrator.results import Result
from web import render
from web.auth import request_credential
from web.keys import EXECUTOR, LISTENER, READS, SETTINGS, TX_ENGINE
from web.request_state import COMMAND_ID, IDEMPOTENCY, PREFERENCE, REQUEST_ID
from web.responses import envelope

log = logging.getLogger(__name__)
#: ASCII digits (``\d`` also takes other scripts'); a value past 60 is ignored, however many digits it has.
_WAIT = re.compile(r"wait=([0-9]+)")


@dataclass(frozen=True)
class Subject:
    """A row the command acts on that must exist when it is recorded: the command's ``INSERT`` carries
    the condition and reads the row (``commands_db.insert_on``), and ``missing`` is raised, nothing
    recorded, when the row is not there."""

    insert: prepared.Query
    id: str
    missing: errors.OrchestratorError


@dataclass(frozen=True)
class CommandState:
    id: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    flow_status: str | None = None
    flow_error: dict[str, Any] | None = None
    #: The command itself (set by ``run``): what it acts on is shown as it stands while it is pending.
    kind: str | None = None
    payload: dict[str, Any] | None = None
    #: The subject's row as it stood when the command was recorded, kept for an answer given at once
    #: (``respond-async``): it is the resource as it stands. An answer after a wait reads it again.
    subject: Any = None

    @property
    def finished(self) -> bool:
        """Done with its own transaction and with any ledger work it started."""
        return self.status != Status.PENDING and self.flow_status != "RUNNING"


def wait_seconds(request: web.Request) -> tuple[float, str | None]:
    """How long to wait and which preference was applied (``Prefer``, spec api.md §1.12)."""
    prefer = request.headers.get("Prefer", "").lower()
    if "respond-async" in prefer:
        return 0.0, "respond-async"
    match = _WAIT.search(prefer)
    digits = match.group(1).lstrip("0") if match else ""
    if digits and len(digits) <= 2 and 1 <= int(digits) <= 60:  # int() refuses over 4300 digits: no 500
        return int(digits), f"wait={digits}"
    return request.app[SETTINGS].command_wait_seconds, None


async def run(request: web.Request, kind: str, payload: dict[str, Any], *,
              subject: Subject | None = None) -> CommandState:
    """Record, publish and wait for one command; returns its state when done or when the wait ends.

    With ``subject``, the command is recorded only if that row exists (else its error is raised)."""
    check_payload(kind, payload)  # the kind's payload type reads it, or nothing is recorded
    app, credential = request.app, request_credential(request)
    command_id = ids.new_id("command")
    idempotency = request.get(IDEMPOTENCY)
    values = commands_db.row(id=command_id, kind=kind, payload=payload, actor_type=credential.actor_type,
                             actor_id=credential.key_id, request_id=request[REQUEST_ID],
                             idempotency_key=idempotency[1] if idempotency else None)
    statement = commands_db.RECORD if subject is None else subject.insert
    if subject is not None:
        values["subject_id"] = subject.id
    rows: Sequence[Any]
    if idempotency:  # the command and its key's link commit together
        async with app[TX_ENGINE].begin() as conn:
            rows = (await conn.execute(cast(Executable, statement.statement), values)).all()
            if subject is None or rows:
                await conn.execute(idempotency_db.attach_command(*idempotency, command_id))
    else:  # one autocommit statement on the psycopg pool: no BEGIN and COMMIT, no SQLAlchemy (issue 16)
        rows = await prepared.fetch_all(app[READS], statement, **values)
    found = rows[0] if subject is not None and rows else None
    if subject is not None and found is None:
        raise subject.missing
    request[COMMAND_ID] = command_id
    logs.bind(command_id=command_id)
    listener = app[LISTENER]
    listener.expect(command_id)  # before publishing: the notification cannot come first
    try:
        await publish(app, command_id)
        timeout, applied = wait_seconds(request)
        if applied:
            request[PREFERENCE] = applied
        return dataclasses.replace(await wait(app, command_id, timeout), kind=kind, payload=payload,
                                   subject=found if timeout <= 0 else None)
    finally:
        listener.forget(command_id)


async def publish(app: web.Application, command_id: str) -> None:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(app[EXECUTOR], execute_command.send, command_id)
    except Exception:
        log.exception("Publishing command %s failed; the sweep will publish it again", command_id)


async def wait(app: web.Application, command_id: str, seconds: float) -> CommandState:
    """Wait on notifications (the command's, then its flow's), re-reading the row at least once a
    second in case LISTEN is down. A notification carries the command's state (``notify_done``): the
    row is read only when one did not, or none came within the second."""
    if seconds <= 0:  # respond-async: 202 whatever the worker did meanwhile (api.md §1.12), so no read
        return CommandState(command_id, Status.PENDING, None, None)
    loop = asyncio.get_running_loop()
    listener = app[LISTENER]
    deadline = loop.time() + seconds
    while True:
        remaining = deadline - loop.time()
        note = None
        if remaining > 0:
            future = listener.expect(command_id)
            with contextlib.suppress(TimeoutError):
                note = await asyncio.wait_for(asyncio.shield(future), min(remaining, 1.0))
            if future.done():
                listener.taken(command_id, future)
        state = noted(command_id, note) if note is not None else await read(app, command_id)
        if state.finished or deadline - loop.time() <= 0:
            return state


def noted(command_id: str, note: dict[str, Any]) -> CommandState:
    """The state a ``command_done`` notification carried (``orchestrator.db.commands.notify_done``)."""
    return CommandState(command_id, note["status"], note["result"], note["error"], note["flowStatus"],
                        note["flowError"])


async def read(app: web.Application, command_id: str) -> CommandState:
    row = await prepared.fetch_one(app[READS], commands_db.STATUS_OF, command_id=command_id)
    if row is None:
        return CommandState(command_id, "MISSING", None, None)
    return CommandState(command_id, row.status, row.result, row.error, row.flow_status, row.flow_error)


async def respond(request: web.Request, state: CommandState, *,
                  current: Callable[[], Awaitable[Any]] | None = None,
                  extra: dict[str, Any] | None = None) -> web.Response:
    """200/201 with the resource, the stored error, or 202 with the resource as it stands.

    A command not run yet shows its subject as it stands (``current`` overrides that read); a create
    has none (null) until it ran. ``extra`` (a secret shown once, like an API key's plaintext) is never
    dropped: with no resource to add it to, it is the data, or the client could never learn it.
    """
    if state.status == Status.FAILED:
        raise errors.from_dict(state.error or {})
    if state.flow_status == "FAILED":
        raise errors.from_dict(state.flow_error or {})
    if state.status == Status.DONE and state.flow_status == "RUNNING":  # ledger work still under way
        data = await render.render(request, Result.from_dict(state.result or {}))
        return envelope(request, data, status=202, commandId=state.id, pending=True)
    if state.status == Status.DONE:
        result = Result.from_dict(state.result or {})
        data = await render.render(request, result)
        if extra and isinstance(data, dict):
            data = {**data, **extra}
        return envelope(request, data, status=result.status)
    data = await current() if current else await as_it_stands(request, state)
    if extra and isinstance(data, dict):
        data = {**data, **extra}
    elif extra and data is None:
        data = dict(extra)
    return envelope(request, data, status=202, commandId=state.id, pending=True)


async def as_it_stands(request: web.Request, state: CommandState) -> Any:
    """The resource a pending command acts on (``commands.pending_subject``), read now with its
    finished answer's renderer; None when it does not exist yet (a create) or cannot be read: a 202
    never becomes an error (the command is recorded and will run; events and ``GET`` follow it)."""
    if state.kind is None:
        return None
    try:
        subject = pending_subject(state.kind, state.payload or {})
        return None if subject is None else await render.render(request, subject)
    except errors.NotFound:
        return None
    except Exception:
        log.warning("Reading what command %s acts on for its 202 failed; answering null", state.id, exc_info=True)
        return None
