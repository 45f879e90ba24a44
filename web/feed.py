"""The newest outbox events, read once per web process per wake-up and shared by every SSE stream.

Without it each open stream ran its own ``position > last`` query when an event arrived: a thousand
listeners made a thousand queries per event against a pool of twenty. Here one task reads the new rows
when the ``LISTEN`` connection says "read again", keeps the last ``keep`` of them in memory (with their
JSON already encoded), and then wakes the streams; each stream takes the events after its own position
from this buffer and applies its own filters. Positions are gap-free and assigned in commit order, so
the buffer is a contiguous run ``low..top``: a stream whose position is inside it is served without a
query, and a stream that fell behind it (a replay from an old cursor, a slow client) reads the database
itself, as before, until it reaches the buffer. The database stays the source of every event sent.

Notifications only make the feed prompt, never correct: it also reads every ``idle_read_seconds``
without one, and while its last completed read is older than three of those intervals (a read that
hangs, a task that died) it serves nobody, so every stream reads the database itself. A long chaos
run saw every listener stop at one position when the feed depended on wake-ups alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from orchestrator.db import outbox as outbox_db
from orchestrator.db import prepared
from orchestrator.events import envelope_json

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Item:
    """An event as streams send it: what their filters read, and its envelope as JSON, encoded once."""

    position: int
    event_type: str
    aggregate_type: str
    data: str


def item(values: Sequence[Any]) -> Item:
    """An ``outbox_db.STREAM_AFTER`` row as an ``Item``."""
    position, event_id, event_type, aggregate_type, aggregate_id, occurred_at, payload, metadata = values
    return Item(position, event_type, aggregate_type,
                envelope_json(event_id, event_type, occurred_at, aggregate_id, aggregate_type, payload, metadata))


class EventFeed:
    """The shared tail of the outbox for the streams of one web process."""

    def __init__(self, engine: Any, reads: AsyncConnectionPool, *, keep: int = 2000, batch: int = 500,
                 idle_read_seconds: float = 15.0) -> None:
        self.engine = engine
        self.reads = reads
        #: Outbox reads made for this process's streams, the feed's own and theirs (fan-out costs one per
        #: wake-up, not one per stream: tests/web/test_sse.py counts them).
        self.outbox_reads = 0
        self.keep = keep
        self.batch = batch
        #: Read this often even without a wake-up (a lost notification delays streams, never stalls them).
        self.idle_read_seconds = idle_read_seconds
        #: ``time.monotonic()`` when the last read completed (None before the first).
        self.read_at: float | None = None
        self.items: deque[Item] = deque()
        #: Every event up to ``top`` has been read (None until the first read).
        self.top: int | None = None
        self.subscribers: set[asyncio.Queue[int]] = set()
        self._dirty = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="sse-feed")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def read_after(self, position: int, limit: int) -> list[Item]:
        """Up to ``limit`` events after ``position``, in stream order, straight from the database."""
        self.outbox_reads += 1
        return await prepared.fetch_made(self.reads, outbox_db.STREAM_AFTER, item, after=position, limit=limit)

    def subscribe(self) -> asyncio.Queue[int]:
        queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        if not self.subscribers:
            self._dirty.set()  # the feed rests while nobody listens: read now
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[int]) -> None:
        self.subscribers.discard(queue)

    def wake(self, position: int = 0) -> None:
        """New events were numbered (or the ``LISTEN`` connection came back): read once, then wake streams."""
        self._dirty.set()

    def fresh(self) -> bool:
        """Whether the buffer is recent enough to serve from (else streams read the database)."""
        return self.read_at is not None and time.monotonic() - self.read_at <= 3 * self.idle_read_seconds

    def after(self, position: int) -> list[Item] | None:
        """The events after ``position`` in stream order, or None when the buffer does not hold them all
        (or is stale)."""
        if self.top is None or not self.fresh():
            return None
        if position >= self.top:
            return []  # nothing newer read yet; the next read wakes the stream
        low = self.items[0].position if self.items else self.top + 1
        if position < low - 1:
            return None
        start = position - low + 1
        return [self.items[i] for i in range(start, len(self.items))]

    def _wake_streams(self) -> None:
        for queue in self.subscribers:
            if not queue.full():  # else a wake-up is already pending
                queue.put_nowait(self.top or 0)

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the cancellation that
            # stop() sends when the wait completes at the same moment, and stop() then waits forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.idle_read_seconds):
                    await self._dirty.wait()
            self._dirty.clear()  # a wake-up during the read below makes the loop read once more
            if not self.subscribers:
                self._rest()
                continue
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Reading new outbox events failed; retrying in 1 s")
                await asyncio.sleep(1)
                self._dirty.set()

    def _rest(self) -> None:
        """Nobody listens: read nothing (each credit's event read and encoded for no one was 6 % of a web
        process taking credits, issue 16), and forget the buffer, so the first stream to come reads the
        database until the feed has read again from the top."""
        self.top, self.read_at = None, None
        self.items.clear()

    async def _read(self) -> None:
        if self.top is None:
            async with self.engine.connect() as conn:
                self.top = int((await conn.execute(outbox_db.bounds())).first()[1] or 0)
        while True:
            rows = await self.read_after(self.top, self.batch)
            for row in rows:
                if row.position != self.top + 1:
                    self.items.clear()  # not contiguous (pruned past us): start the buffer again here
                self.items.append(row)
                self.top = row.position
            while len(self.items) > self.keep:
                self.items.popleft()
            if rows:
                self._wake_streams()
            if len(rows) < self.batch:
                break
        self.read_at = time.monotonic()
        self._wake_streams()  # also after a reconnect with nothing new: streams look again
