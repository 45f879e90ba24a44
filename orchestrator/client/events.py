"""``events.stream()``: the SSE stream of events.md §2 as a generator that survives dropped connections.

The server numbers events with gap-free positions in commit order and sends each as the SSE ``id``. The
stream remembers the last position it yielded; after a drop it reconnects with ``Last-Event-ID`` set to it,
so the server replays exactly what came after. Anything at or below that position, or an ``eventId`` already
yielded, is skipped: an event is never yielded twice, and none is lost while the server retains it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from orchestrator.client.errors import NetworkError, OfferHubError, RateLimitError
from orchestrator.client.transport import Transport, query

log = logging.getLogger(__name__)
#: The server sends a heartbeat every 15-30 s; three missed ones mean the connection is dead.
SILENCE_SECONDS = 95.0
REMEMBERED_IDS = 10_000


@dataclass
class Message:
    """One SSE message (``event`` is ``None`` for an unnamed one)."""

    id: str | None = None
    event: str | None = None
    data: str | None = None
    retry: int | None = None


class Event(dict[str, Any]):
    """An event envelope (``eventId``, ``eventType``, ``aggregateId``, ``payload``…) and its stream position."""

    position: str | None = None


async def messages(content: aiohttp.StreamReader) -> AsyncIterator[Message]:
    """Parse ``text/event-stream`` (the WHATWG rules the server's format needs)."""
    current, data = Message(), list[str]()
    async for raw in content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data or current.event or current.retry is not None:
                current.data = "\n".join(data) if data else None
                yield current
            current, data = Message(), []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "id":
            current.id = value
        elif name == "event":
            current.event = value
        elif name == "retry" and value.isdigit():
            current.retry = int(value)


class _Cursor:
    """Where the stream is: the last position yielded, and the event ids yielded lately."""

    def __init__(self, start: str | None) -> None:
        self.value = start
        self.position = int(start) if start and start.isdigit() else None
        self.seen: OrderedDict[str, None] = OrderedDict()

    def admit(self, message: Message) -> Event | None:
        """The event to yield for ``message``, or ``None`` for one already yielded."""
        position = int(message.id) if message.id and message.id.isdigit() else None
        if position is not None and self.position is not None and position <= self.position:
            return None
        event = Event(json.loads(message.data or "{}"))
        event.position = message.id
        event_id = event.get("eventId")
        if event_id in self.seen:
            return None
        if event_id:
            self.seen[event_id] = None
            if len(self.seen) > REMEMBERED_IDS:
                self.seen.popitem(last=False)
        if position is not None:
            self.position = position
        if message.id:
            self.value = message.id
        return event


class Events:
    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def stream(self, *, types: list[str] | str | None = None, resource_types: list[str] | str | None = None,
                     last_event_id: str | None = None, reconnect: bool = True, max_reconnect_delay: float = 30.0,
                     on_gap: Callable[[dict[str, Any]], None] | None = None,
                     on_reconnect: Callable[[str | None], None] | None = None) -> AsyncIterator[Event]:
        """Yield events after ``last_event_id`` (a position, ``evt_`` id or ISO time; ``None``: from now on).

        Heartbeats are swallowed; a ``stream.gap`` notice (the cursor is older than what the server keeps)
        goes to ``on_gap``. Authentication, scope and validation errors are raised; a dropped connection, a
        silent one, a 5xx or a 429 are retried with backoff unless ``reconnect`` is false.
        """
        params = query(types=types, resourceTypes=resource_types)
        cursor = _Cursor(last_event_id)
        delay, pause = 0.5, 0.0
        while True:
            try:
                async with self._t.stream("/events", params, cursor.value, SILENCE_SECONDS) as response:
                    delay = 0.5
                    async for message in messages(response.content):
                        if message.retry is not None:
                            pause = message.retry / 1000
                        if message.event == "ping" or message.data is None:
                            continue
                        if message.event == "stream.gap":
                            (on_gap or _log_gap)(json.loads(message.data))
                        elif (event := cursor.admit(message)) is not None:
                            yield event
            except OfferHubError as error:
                retryable = isinstance(error, NetworkError | RateLimitError) or error.status_code >= 500
                if not (reconnect and retryable):
                    raise
                told = error.retry_after if isinstance(error, RateLimitError) else None
                pause = max(pause, told or 0.0)
            if not reconnect:  # the server ended the stream (a restart, a deploy)
                return
            await asyncio.sleep(max(pause, delay))
            delay = min(delay * 2, max_reconnect_delay)
            if on_reconnect is not None:
                on_reconnect(cursor.value)


def _log_gap(notice: dict[str, Any]) -> None:
    log.warning("Events were pruned before the cursor %s; resuming from %s",
                notice.get("requestedCursor"), notice.get("oldestAvailable"))
