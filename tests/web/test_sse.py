"""The event stream (spec events.md §2): replay, live delivery, reconnection without loss or repeats."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import Engine, text

from orchestrator.outbox.relay import relay
from orchestrator.unit_of_work import Context, UnitOfWork
from tests.api import Api
from web.keys import FEED


async def read_events(client: TestClient, key: str, *, query: str = "", last_id: str | None = None,
                      want: int, seconds: float = 20,
                      keep: Callable[[dict[str, Any]], bool] = lambda _: True) -> list[dict[str, Any]]:
    """Connect, collect ``want`` events that ``keep`` accepts (with their ``id:``), then disconnect."""
    headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    got: list[dict[str, Any]] = []
    async with client.get(f"/api/v1/events{query}", headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")

        async def collect() -> None:
            async for message in messages(resp.content):
                if "data" in message and message.get("event") is None:
                    event = {"id": message["id"], **json.loads(message["data"])}
                    if keep(event):
                        got.append(event)
                    if len(got) >= want:
                        return

        await asyncio.wait_for(collect(), seconds)
    return got


async def messages(stream: Any) -> AsyncIterator[dict[str, str]]:
    message: dict[str, str] = {}
    async for raw in stream:
        line = raw.decode().rstrip("\n")
        if not line:
            if message:
                yield message
            message = {}
            continue
        field, _, value = line.partition(": ")
        message[field] = value


async def test_a_listener_that_reconnects_gets_every_event_once_in_order_while_writers_run(
        api: Api, client: TestClient, master_key: str, engine: Engine) -> None:
    users = [await api.user() for _ in range(3)]
    ours = {u["id"] for u in users}
    query = "?resourceTypes=Balance"

    async def writer(user_id: str) -> None:
        for _ in range(10):
            assert (await api.post(f"/users/{user_id}/balance/credit", {"amount": "1.00"})).status == 200

    # Given a listener connected before concurrent writers start
    keep = {"keep": lambda e: e["aggregateId"] in ours}
    first_part = asyncio.create_task(read_events(client, master_key, query=query, want=12, **keep))
    await asyncio.sleep(0.3)
    writers = asyncio.gather(*(writer(u["id"]) for u in users))
    seen = await first_part
    # When it disconnects after 12 events and reconnects with Last-Event-ID while writers continue
    seen += await read_events(client, master_key, query=query, last_id=seen[-1]["id"], want=18, **keep)
    await writers
    # Then it has every balance event of these users exactly once, in stream order
    with engine.connect() as conn:
        expected = conn.execute(text(
            "SELECT event_id FROM outbox WHERE aggregate_type = 'Balance' AND aggregate_id = ANY(:ids) "
            "ORDER BY position"), {"ids": list(ours)}).scalars().all()
    assert [e["eventId"] for e in seen] == expected
    positions = [int(e["id"]) for e in seen]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions) == 30


async def test_replay_from_a_position_an_event_id_and_a_time(api: Api, client: TestClient, master_key: str,
                                                             engine: Engine) -> None:
    user = await api.user()
    mine = {"keep": lambda e: e["aggregateId"] == user["id"]}
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"})
    await asyncio.sleep(0.3)
    between = datetime.now(UTC).isoformat()
    for amount in ("2.00", "3.00"):
        await api.post(f"/users/{user['id']}/balance/credit", {"amount": amount})
    with engine.connect() as conn:
        first = conn.execute(text(
            "SELECT position, event_id FROM outbox WHERE aggregate_id = :u AND event_type = 'balance.credited' "
            "ORDER BY position LIMIT 1"), {"u": user["id"]}).one()
    query = "?resourceTypes=Balance&types=balance.credited"
    for cursor in (str(first.position), first.event_id, between):
        events = await read_events(client, master_key, query=query, last_id=cursor, want=2, **mine)
        assert [e["payload"]["amount"] for e in events] == ["2.00", "3.00"], cursor
    via_since = await read_events(client, master_key, query=f"{query}&since={first.position}", want=2, **mine)
    assert [e["payload"]["amount"] for e in via_since] == ["2.00", "3.00"]


async def test_an_unknown_event_id_gets_a_gap_notice_and_then_live_events(api: Api, client: TestClient,
                                                                          master_key: str) -> None:
    headers = {"Authorization": f"Bearer {master_key}", "Last-Event-ID": "evt_doesnotexist"}
    async with client.get("/api/v1/events", headers=headers) as resp:
        first = aiter(messages(resp.content))
        retry = await asyncio.wait_for(anext(first), 5)
        notice = await asyncio.wait_for(anext(first), 5)
    assert retry == {"retry": "3000"}
    assert notice["event"] == "stream.gap"
    assert json.loads(notice["data"])["requestedCursor"] == "evt_doesnotexist"


async def test_a_sixth_concurrent_stream_for_one_key_is_refused(api: Api, client: TestClient) -> None:
    key = await api.key("read")
    headers = {"Authorization": f"Bearer {key}"}
    streams = [await client.get("/api/v1/events", headers=headers) for _ in range(5)]
    try:
        assert all(s.status == 200 for s in streams)
        async with client.get("/api/v1/events", headers=headers) as sixth:
            assert sixth.status == 429
            assert (await sixth.json())["error"]["code"] == "RATE_LIMITED"
    finally:
        for stream in streams:
            stream.close()


async def test_types_filter_with_wildcards_and_named_events(api: Api, client: TestClient, master_key: str) -> None:
    user = await api.user()
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "4.00"})
    named: list[str] = []
    headers = {"Authorization": f"Bearer {master_key}", "Last-Event-ID": "0"}
    async with client.get("/api/v1/events?types=user.*,balance.credited&eventNames=true", headers=headers) as resp:
        async for message in messages(resp.content):
            if "data" in message and json.loads(message["data"]).get("aggregateId") == user["id"]:
                named.append(message["event"])
            if len(named) == 2:
                break
    assert named == ["user.created", "balance.credited"]


async def test_streams_joining_at_different_moments_all_get_every_event_once_in_order(
        api: Api, client: TestClient, master_key: str, engine: Engine) -> None:
    """Replaying from the database and then following the shared feed loses and repeats nothing."""
    users = [await api.user() for _ in range(3)]
    ours = {u["id"] for u in users}
    keep = {"keep": lambda e: e["aggregateId"] in ours}

    async def writer(user_id: str) -> None:
        for _ in range(8):
            assert (await api.post(f"/users/{user_id}/balance/credit", {"amount": "1.00"})).status == 200

    async def late_listener(delay: float, last_id: str | None) -> list[dict[str, Any]]:
        await asyncio.sleep(delay)
        return await read_events(client, master_key, query="?resourceTypes=Balance", last_id=last_id,
                                 want=24, seconds=40, **keep)

    # Given streams that join before, during and after concurrent writers (all from position 0 but one)
    live = asyncio.create_task(late_listener(0, None))
    await asyncio.sleep(0.3)
    joining = [asyncio.create_task(late_listener(delay, "0")) for delay in (0, 0.2, 0.5, 1.0)]
    await asyncio.gather(*(writer(u["id"]) for u in users))
    seen = await asyncio.gather(live, *joining)
    # Then each has every balance event of these users exactly once, in stream order
    with engine.connect() as conn:
        expected = conn.execute(text(
            "SELECT event_id FROM outbox WHERE aggregate_type = 'Balance' AND aggregate_id = ANY(:ids) "
            "ORDER BY position"), {"ids": list(ours)}).scalars().all()
    assert len(expected) == 24
    for events in seen:
        assert [e["eventId"] for e in events] == expected


async def test_many_streams_share_one_outbox_read_per_event_and_each_gets_it(
        api: Api, client: TestClient) -> None:
    """Fan-out costs one query per web process per wake-up, not one per open stream."""
    streams_count = 15
    user = await api.user()
    keys = [await api.key("read") for _ in range(streams_count // 5)]
    streams = [await client.get("/api/v1/events?resourceTypes=Balance",
                                headers={"Authorization": f"Bearer {keys[i // 5]}"}) for i in range(streams_count)]
    readers = [aiter(messages(s.content)) for s in streams]

    async def next_credit(reader: AsyncIterator[dict[str, str]]) -> dict[str, Any]:
        while True:
            message = await reader.__anext__()
            if "data" in message and json.loads(message["data"]).get("aggregateId") == user["id"]:
                return {"id": message["id"], **json.loads(message["data"])}

    async def everyone_gets(amount: str) -> list[dict[str, Any]]:
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": amount})).status == 200
        return await asyncio.wait_for(asyncio.gather(*(next_credit(r) for r in readers)), 20)

    feed = client.server.app[FEED]
    try:
        # Given 15 open streams that are all live (each already received a first credit)
        await everyone_gets("1.00")
        before = feed.outbox_reads
        # When one more credit is made
        received = await everyone_gets("2.00")
        outbox_reads = feed.outbox_reads - before
    finally:
        for stream in streams:
            stream.close()
    # Then every stream got the same event, at the same position
    assert {(e["id"], e["eventId"], e["payload"]["amount"]) for e in received} == {
        (received[0]["id"], received[0]["eventId"], "2.00")}
    # And the outbox was read once per wake-up for all of them, not once per stream
    assert 1 <= outbox_reads <= 3, outbox_reads


async def test_an_event_reads_the_same_replayed_and_live_as_its_stored_row(
        client: TestClient, master_key: str, engine: Engine) -> None:
    """The stream builds each envelope from the row's text (issue 16): the values a client parses must be
    the stored ones, whatever the payload holds and whichever path (replay or the live feed) sends it."""
    aggregate = f"usr_{uuid.uuid4().hex}"
    payload = {"amount": "1.50", "note": "café ✓ \"quoted\" \\ tab\t", "n": 1.5, "big": 12345678901234567890,
               "nested": {"b": [1, "x", None, True], "a": {}}, "": "empty key"}
    with engine.connect() as conn:
        before = conn.execute(text("SELECT coalesce(max(position), 0) FROM outbox")).scalar_one()
    keep = {"keep": lambda e: e["aggregateId"] == aggregate}
    live = asyncio.create_task(read_events(client, master_key, want=1, **keep))
    await asyncio.sleep(0.5)  # the live stream is subscribed before the event exists
    # the event is stored as every event is (with its audit entry), then given a time the format must pad
    with UnitOfWork(engine, Context(correlation_id="req_é")) as uow:
        event_id = uow.emit("balance.credited", aggregate, payload)
        uow.conn.execute(text("UPDATE outbox SET occurred_at = '0999-01-02 03:04:05.678999+00' WHERE event_id = :e"),
                         {"e": event_id})
        uow.commit()
    relay(engine)  # numbered (and announced) as the relay numbers every event
    replayed = await read_events(client, master_key, last_id=str(before), want=1, **keep)
    for got in (replayed[0], (await live)[0]):
        assert got["eventId"] == event_id
        assert got["payload"] == payload
        assert got["metadata"] == {"correlationId": "req_é", "actorType": "SYSTEM"}
        assert got["occurredAt"] == "0999-01-02T03:04:05.678Z"  # events.iso: milliseconds truncated, year padded
        assert (got["eventType"], got["aggregateType"]) == ("balance.credited", "Balance")
