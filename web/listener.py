"""One ``LISTEN`` connection per web process: wakes waiting requests, the SSE feed and the caches."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import psycopg

from orchestrator.commands import DONE_CHANNEL
from orchestrator.outbox.relay import EVENTS_CHANNEL

log = logging.getLogger(__name__)


class Listener:
    """Dispatches notifications; reconnects forever, and wakes everyone after a reconnect (they re-read)."""

    def __init__(self, dsn: str, callbacks: dict[str, Callable[[str], None]],
                 on_events: Callable[[int], None] | None = None) -> None:
        self.dsn = dsn
        self.callbacks = callbacks
        #: Told of each newly numbered position (the SSE feed reads them once for every stream).
        self.on_events = on_events
        #: A future per waiting command: resolved with the command's state as its notification carried it
        #: (``commands_db.notify_done``), or None when the waiter must read the row (a bare id, a reconnect).
        self.waiters: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self.connected = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="pg-listener")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def expect(self, command_id: str) -> asyncio.Future[dict[str, Any] | None]:
        """A future resolved by ``command_id``'s next notification not yet ``taken`` (register before
        publishing: the notification cannot come first)."""
        future = self.waiters.get(command_id)
        if future is None:
            future = self.waiters[command_id] = asyncio.get_running_loop().create_future()
        return future

    def taken(self, command_id: str, future: asyncio.Future[dict[str, Any] | None]) -> None:
        """The waiter has read ``future``: the next notification resolves a new one."""
        if self.waiters.get(command_id) is future:
            self.waiters[command_id] = asyncio.get_running_loop().create_future()

    def forget(self, command_id: str) -> None:
        self.waiters.pop(command_id, None)

    def _resolve(self, command_id: str, note: dict[str, Any] | None) -> None:
        """Resolve the waiter's future; one it has not taken yet is replaced, so the latest note wins and
        a notification between two waits is never lost (a flow's end right after its command's)."""
        future = self.waiters.get(command_id)
        if future is None:
            return
        if future.done():
            future = self.waiters[command_id] = asyncio.get_running_loop().create_future()
        future.set_result(note)

    def _wake_streams(self, position: int) -> None:
        if self.on_events is not None:
            self.on_events(position)

    def _wake_all(self) -> None:
        for callback in self.callbacks.values():
            callback("")  # whatever changed while we were away: caches start over
        for command_id in list(self.waiters):
            self._resolve(command_id, None)  # notes may have been missed: read the rows
        self._wake_streams(0)

    async def _run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    for channel in (DONE_CHANNEL, EVENTS_CHANNEL, *self.callbacks):
                        await conn.execute(f'LISTEN "{channel}"')
                    self.connected.set()
                    self._wake_all()
                    async for note in conn.notifies():
                        self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("The LISTEN connection failed; reconnecting in 1 s")
            self.connected.clear()
            await asyncio.sleep(1)

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == DONE_CHANNEL:
            if payload.startswith("{"):
                note = orjson.loads(payload)
                self._resolve(note["id"], note if "status" in note else None)
            else:  # a bare id (a worker of an earlier release): the waiter reads the row
                self._resolve(payload, None)
        elif channel == EVENTS_CHANNEL:
            self._wake_streams(int(payload))
        elif channel in self.callbacks:
            self.callbacks[channel](payload)
