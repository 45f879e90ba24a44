"""``events.stream()``: replay, live events, and a dropped connection resumed with Last-Event-ID, no repeats."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.client import AsyncClient, AuthenticationError, Client, Event
from tests.api import unique
from tests.sdk.proxy import FaultyProxy, faulty_proxy


@pytest.fixture
def proxy(server_url: str) -> Iterator[FaultyProxy]:
    with faulty_proxy(server_url) as running:
        yield running


async def until(condition: object, seconds: float = 30) -> None:
    for _ in range(int(seconds * 20)):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_a_cut_stream_resumes_from_its_last_event_and_never_repeats_one(
        server_url: str, master_key: str, proxy: FaultyProxy) -> None:
    ours: set[str] = set()
    everything: list[Event] = []
    reconnects: list[str | None] = []
    async with AsyncClient(server_url, master_key) as direct, AsyncClient(proxy.url, master_key) as listener:
        stream = listener.events.stream(types=["user.created"], on_reconnect=reconnects.append)

        async def consume() -> None:
            async for event in stream:
                everything.append(event)

        def received() -> list[Event]:  # other tests' users are not ours; ours may arrive before the POST answers
            return [e for e in everything if e["aggregateId"] in ours]

        task = asyncio.create_task(consume())
        await until(lambda: proxy.requests_to("/events"))
        await asyncio.sleep(0.3)  # the server has subscribed before it answered; give the stream a moment
        for _ in range(3):
            ours.add((await direct.users.create(external_user_id=unique("sse")))["id"])
        await until(lambda: len(received()) == 3)
        last_before_cut = received()[-1].position
        assert proxy.cut_streams() == 1
        for _ in range(3):  # committed while the stream is down
            ours.add((await direct.users.create(external_user_id=unique("sse")))["id"])
        await until(lambda: len(received()) == 6)
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()

    assert {e["aggregateId"] for e in received()} == ours
    assert len({e["eventId"] for e in everything}) == len(everything)  # nothing yielded twice
    positions = [int(e.position or 0) for e in everything]
    assert positions == sorted(positions)
    assert reconnects == [last_before_cut]
    resumed = proxy.requests_to("/events")[1]
    assert resumed.headers["Last-Event-ID"] == last_before_cut


def test_the_sync_stream_replays_from_an_iso_time_and_stops_when_left(server_url: str, master_key: str) -> None:
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    with Client(server_url, master_key) as client:
        made = [client.users.create(external_user_id=unique("replay"))["id"] for _ in range(2)]
        seen = []
        for event in client.events.stream(types=["user.*"], resource_types=["User"], last_event_id=since):
            assert event["aggregateType"] == "User"
            if event["aggregateId"] in made:
                seen.append(event["aggregateId"])
            if len(seen) == 2:
                break
        assert seen == made
        assert client.system.health()["status"] == "healthy"  # the client still works after leaving a stream


async def test_a_refused_credential_raises_instead_of_reconnecting(server_url: str) -> None:
    async with AsyncClient(server_url, "ohk_test_key_notarealkeyatall_000000") as client:
        with pytest.raises(AuthenticationError):
            async for _ in client.events.stream():
                pass
