"""The write path's web half: record the command, publish it, wait for it (or answer 202).

The command row is committed before the message is sent, and the waiter is registered before the
send, so a fast actor's notification can never be missed. A publish failure loses nothing: the row
stays pending and the scheduler's sweep publishes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from actors.commands import execute_command
from orchestrator import errors, ids, logs
from orchestrator.commands import Status
from orchestrator.db import commands as commands_db
from orchestrator.db import idempotency as idempotency_db
from orchestrator.results import Result
from web import render
from web.auth import request_credential
from web.keys import ENGINE, EXECUTOR, LISTENER, SETTINGS, TX_ENGINE
from web.request_state import COMMAND_ID, IDEMPOTENCY, PREFERENCE, REQUEST_ID
from web.responses import envelope

log = logging.getLogger(__name__)
_WAIT = re.compile(r"wait=(\d+)")


@dataclass(frozen=True)
class CommandState:
    id: str
    status: str
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    flow_status: str | None = None
    flow_error: dict[str, Any] | None = None

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
    if match and 1 <= int(match.group(1)) <= 60:
        return int(match.group(1)), f"wait={match.group(1)}"
    return request.app[SETTINGS].command_wait_seconds, None


async def run(request: web.Request, kind: str, payload: dict[str, Any]) -> CommandState:
    """Record, publish and wait for one command; returns its state when done or when the wait ends."""
    app, credential = request.app, request_credential(request)
    command_id = ids.new_id("command")
    idempotency = request.get(IDEMPOTENCY)
    async with app[TX_ENGINE].begin() as conn:
        await conn.execute(commands_db.insert(
            id=command_id, kind=kind, payload=payload, actor_type=credential.actor_type,
            actor_id=credential.key_id, request_id=request[REQUEST_ID],
            idempotency_key=idempotency[1] if idempotency else None))
        if idempotency:
            await conn.execute(idempotency_db.attach_command(*idempotency, command_id))
    request[COMMAND_ID] = command_id
    logs.bind(command_id=command_id)
    listener = app[LISTENER]
    listener.expect(command_id)  # before publishing: the notification cannot come first
    try:
        await publish(app, command_id)
        timeout, applied = wait_seconds(request)
        if applied:
            request[PREFERENCE] = applied
        return await wait(app, command_id, timeout)
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
    second in case LISTEN is down."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        remaining = deadline - loop.time()
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(app[LISTENER].expect(command_id)), min(remaining, 1.0))
        state = await read(app, command_id)
        if state.finished or deadline - loop.time() <= 0:
            return state


async def read(app: web.Application, command_id: str) -> CommandState:
    async with app[ENGINE].connect() as conn:
        row = (await conn.execute(commands_db.status_of(command_id))).first()
    if row is None:
        return CommandState(command_id, "MISSING", None, None)
    return CommandState(command_id, row.status, row.result, row.error, row.flow_status, row.flow_error)


async def respond(request: web.Request, state: CommandState, *,
                  current: Callable[[], Awaitable[Any]] | None = None,
                  extra: dict[str, Any] | None = None) -> web.Response:
    """200/201 with the resource, the stored error, or 202 with the resource as it stands."""
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
    data = await current() if current else None
    if extra and isinstance(data, dict):
        data = {**data, **extra}
    return envelope(request, data, status=202, commandId=state.id, pending=True)
