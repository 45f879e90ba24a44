"""``GET /api/v1/events``: replay from a cursor, then live events, with heartbeats (spec events.md §2).

Positions are gap-free and assigned in commit order, so a stream that remembers the last position it
sent and reads ``position > last`` can never skip or repeat an event. Live events come from the
process's shared feed (``web/feed.py``: one outbox read per wake-up for all streams); a stream the
feed's buffer does not reach (a replay from an old cursor) reads the database itself until it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web
from redis.exceptions import RedisError

from orchestrator.db import outbox as outbox_db
from orchestrator.errors import RateLimited, ValidationFailed
from orchestrator.events import AGGREGATE_TYPES, iso, now
from schemas import queries
from web.apidoc import doc
from web.auth import request_credential, requires
from web.feed import EventFeed, Item
from web.keys import ENGINE, FEED, REDIS, SETTINGS
from web.request_state import REQUEST_ID

log = logging.getLogger(__name__)
MAX_STREAMS_PER_KEY = 5
#: Positions are PostgreSQL bigints.
MAX_POSITION = 2**63 - 1
_POSITION = re.compile(r"[0-9]+")
BATCH = 500


@dataclass(frozen=True)
class Filter:
    types: tuple[str, ...]
    resource_types: frozenset[str]

    def accepts(self, event: Item) -> bool:
        if self.resource_types and event.aggregate_type not in self.resource_types:
            return False
        return not self.types or any(fnmatch.fnmatchcase(event.event_type, t) for t in self.types)


def parse_filter(request: web.Request) -> Filter:
    def values(name: str) -> list[str]:
        return [v.strip() for raw in request.query.getall(name, []) for v in raw.split(",") if v.strip()]

    resource_types = values("resourceTypes")
    unknown = [r for r in resource_types if r not in AGGREGATE_TYPES]
    if unknown:
        raise ValidationFailed.field("resourceTypes", "INVALID_ENUM", f"unknown resource type {unknown[0]}",
                                     allowed=sorted(AGGREGATE_TYPES))
    types = values("types")
    return Filter(tuple("*" if t == "*" else t for t in types), frozenset(resource_types))


async def resolve_cursor(request: web.Request, cursor: str | None) -> tuple[int, str | None]:
    """The position to replay after, and a gap notice's requested cursor when the cursor is unknown."""
    async with request.app[ENGINE].connect() as conn:
        if cursor is None:
            return int((await conn.execute(outbox_db.bounds())).first()[1] or 0), None
        if _POSITION.fullmatch(cursor):  # ASCII digits: str.isdigit() also takes "²", which int() refuses
            if int(cursor) > MAX_POSITION:
                raise ValidationFailed.field("Last-Event-ID", "INVALID_FORMAT",
                                             f"a position is at most {MAX_POSITION}")
            return int(cursor), None
        if cursor.startswith("evt_"):
            position = (await conn.execute(outbox_db.position_of_event(cursor))).scalar()
            if position is None:
                top = (await conn.execute(outbox_db.bounds())).first()[1] or 0
                return int(top), cursor
            return int(position), None
        try:
            moment = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed.field("Last-Event-ID", "INVALID_FORMAT",
                                         "must be a position, an event id or an ISO 8601 time") from None
        if moment.tzinfo is None:
            raise ValidationFailed.field("Last-Event-ID", "INVALID_FORMAT", "an ISO time needs an offset")
        return int((await conn.execute(outbox_db.last_position_before(moment))).scalar_one()), None


@doc("Stream events (server-sent events): replay after a cursor, then live", query=queries.Events,
     response={"type": "string"}, media_type="text/event-stream", envelope=False,
     headers={"Last-Event-ID": "replay cursor: a position, an event id or an ISO time (events.md)"})
@requires("read")
async def stream_events(request: web.Request) -> web.StreamResponse:
    credential = request_credential(request)
    event_filter = parse_filter(request)
    cursor = request.headers.get("Last-Event-ID") or request.query.get("since")
    named = request.query.get("eventNames") == "true"
    feed = request.app[FEED]
    wake = feed.subscribe()  # before the replay query: nothing committed meanwhile is missed
    slot = await _acquire_slot(request, credential.key_id)
    try:
        position, unknown_cursor = await resolve_cursor(request, cursor)
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive",
            "X-Accel-Buffering": "no", "X-Request-ID": request[REQUEST_ID]})
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        position = await _gap_notice(request, response, cursor, position, unknown_cursor)
        await _pump(request, response, wake, position, event_filter, named, slot)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(wake)
        await _release_slot(request, credential.key_id, slot)
    return response


async def _gap_notice(request: web.Request, response: web.StreamResponse, cursor: str | None,
                      position: int, unknown_cursor: str | None) -> int:
    async with request.app[ENGINE].connect() as conn:
        oldest, _ = (await conn.execute(outbox_db.bounds())).first()
    if unknown_cursor is not None or (cursor and oldest is not None and position < oldest - 1):
        notice = {"requestedCursor": cursor, "oldestAvailable": str(oldest or 0)}
        await response.write(f"event: stream.gap\ndata: {json.dumps(notice)}\n\n".encode())
        if unknown_cursor is None and oldest is not None:
            return oldest - 1
    return position


async def _pump(request: web.Request, response: web.StreamResponse, wake: asyncio.Queue[int], position: int,
                event_filter: Filter, named: bool, slot: str) -> None:
    heartbeat = request.app[SETTINGS].sse_heartbeat_seconds
    while True:
        position = await _send_after(request, response, position, event_filter, named)
        try:
            async with asyncio.timeout(heartbeat):  # not wait_for: 3.11's can swallow a cancellation
                await wake.get()
        except TimeoutError:
            ping = {"ping": True, "timestamp": iso(now())}
            await response.write(f"event: ping\ndata: {json.dumps(ping)}\n\n".encode())
            await _refresh_slot(request, request_credential(request).key_id, slot)


async def _send_after(request: web.Request, response: web.StreamResponse, position: int,
                      event_filter: Filter, named: bool) -> int:
    """Send every retained event after ``position``; returns the last position read.

    From the shared feed when it holds everything after ``position`` (no query), else from the
    database, a batch at a time, until the stream reaches the feed or the newest event.
    """
    feed: EventFeed = request.app[FEED]
    while True:
        items: list[Item] | None = feed.after(position)
        shared = items is not None
        if items is None:
            items = await feed.read_after(position, BATCH)
        chunks = []
        for entry in items:
            position = entry.position
            if event_filter.accepts(entry):
                name = f"event: {entry.event_type}\n" if named else ""
                chunks.append(f"id: {position}\n{name}data: {entry.data}\n\n")
        if chunks:
            await response.write("".join(chunks).encode())
        if shared or len(items) < BATCH:
            return position


def _slot_key(request: web.Request, key_id: str) -> str:
    return f"{request.app[SETTINGS].redis_prefix}sse:{key_id}"


async def _acquire_slot(request: web.Request, key_id: str) -> str:
    """At most five concurrent streams per key across all web processes (fail-open without Redis)."""
    slot, redis, key = uuid.uuid4().hex, request.app[REDIS], _slot_key(request, key_id)
    lease = time.time() + 3 * request.app[SETTINGS].sse_heartbeat_seconds
    try:
        await redis.zremrangebyscore(key, 0, time.time())
        await redis.zadd(key, {slot: lease})
        if await redis.zcard(key) > MAX_STREAMS_PER_KEY:  # add first, then count: never more than five
            await redis.zrem(key, slot)
            raise RateLimited("Too many concurrent event streams for this key", details={
                "limit": MAX_STREAMS_PER_KEY, "windowSeconds": 0, "retryAfter": 5})
    except RedisError:
        log.warning("Stream limiter unavailable; allowing the stream (fail-open)")
    return slot


async def _refresh_slot(request: web.Request, key_id: str, slot: str) -> None:
    lease = time.time() + 3 * request.app[SETTINGS].sse_heartbeat_seconds
    with contextlib.suppress(RedisError):
        await request.app[REDIS].zadd(_slot_key(request, key_id), {slot: lease})


async def _release_slot(request: web.Request, key_id: str, slot: str) -> None:
    with contextlib.suppress(RedisError):
        await request.app[REDIS].zrem(_slot_key(request, key_id), slot)
