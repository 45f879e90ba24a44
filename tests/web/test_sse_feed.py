"""The shared SSE feed does not depend on notifications: it reads by itself, and a stale one serves nobody.

A feed here is our own ``EventFeed`` on the test app's engine, connected to no ``LISTEN`` connection,
as a web process whose notifications stopped arriving would be.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from aiohttp.test_utils import TestClient

from tests.api import Api
from web.feed import EventFeed
from web.keys import ENGINE, READS


async def _until(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_feed_that_gets_no_notification_still_reads_new_events(api: Api, client: TestClient) -> None:
    # Given a feed with a stream listening, that has read the outbox once and is never woken
    feed = EventFeed(client.server.app[ENGINE], client.server.app[READS], idle_read_seconds=0.3)
    feed.subscribe()
    feed.start()
    try:
        await _until(lambda: feed.top is not None)
        top = feed.top
        assert top is not None
        # When an event is committed
        user = await api.user()
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"})).status == 200
        # Then the feed holds it within a few idle intervals, without any wake-up
        await _until(lambda: any(json.loads(i.data)["aggregateId"] == user["id"] for i in feed.after(top) or []), 5)
    finally:
        await feed.stop()


async def test_a_feed_that_stopped_reading_sends_streams_to_the_database(client: TestClient) -> None:
    # Given a feed with a stream listening, that read the outbox and then stopped (a read that hangs, a task
    # that died)
    feed = EventFeed(client.server.app[ENGINE], client.server.app[READS], idle_read_seconds=0.2)
    feed.subscribe()
    feed.start()
    await _until(lambda: feed.top is not None and feed.read_at is not None)
    top = feed.top
    assert top is not None
    assert feed.after(top) == []
    await feed.stop()
    # When three idle intervals pass without a completed read
    await asyncio.sleep(0.7)
    # Then it no longer answers from its buffer: each stream reads the database itself
    assert not feed.fresh()
    assert feed.after(top) is None


async def test_a_feed_nobody_listens_to_reads_nothing_and_its_first_stream_is_served_from_the_top(
        api: Api, client: TestClient) -> None:
    # Given a feed with no stream, woken by new events
    feed = EventFeed(client.server.app[ENGINE], client.server.app[READS], idle_read_seconds=0.2)
    feed.start()
    try:
        user = await api.user()
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"})).status == 200
        feed.wake()
        await asyncio.sleep(0.5)
        # Then it read nothing, and sends a stream that asks to the database
        assert feed.top is None
        assert not feed.items
        assert feed.after(0) is None
        # When a stream subscribes and an event follows
        feed.subscribe()
        await _until(lambda: feed.top is not None)
        top = feed.top
        assert top is not None
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": "2.00"})).status == 200
        feed.wake()
        # Then the feed reads from the top on and holds the new event
        await _until(lambda: any(json.loads(i.data)["aggregateId"] == user["id"] for i in feed.after(top) or []), 5)
    finally:
        await feed.stop()


async def test_a_feed_stops_whenever_it_is_told_to(client: TestClient) -> None:
    """stop() cancels the feed's task; the cancellation must never be lost, even when it lands as an idle
    wait ends (Python 3.11's wait_for swallowed it then, and a web process's shutdown hung)."""
    rng = random.Random(7)
    for _ in range(300):
        # Given a feed whose idle wait ends every millisecond
        feed = EventFeed(client.server.app[ENGINE], client.server.app[READS], idle_read_seconds=0.001)
        feed.start()
        await asyncio.sleep(rng.random() * 0.005)
        feed.wake()
        # When it is stopped, then it stops (at once, but a busy machine gets five seconds)
        await asyncio.wait_for(asyncio.shield(feed.stop()), 5)
