"""The SSE parser on the wire format of events.md §2.3 (and the WHATWG rules it relies on)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from orchestrator.client.events import Message, messages


async def lines(wire: bytes) -> AsyncIterator[bytes]:
    for line in wire.splitlines(keepends=True):
        yield line


async def parse(wire: bytes) -> list[Message]:
    return [message async for message in messages(lines(wire))]


async def test_events_heartbeats_retry_comments_and_multiline_data() -> None:
    wire = (b"retry: 3000\n\n"
            b": a comment line\n"
            b"id: 41\ndata: {\"eventId\":\"evt_a\"}\n\n"
            b"event: ping\ndata: {\"ping\":true}\n\n"
            b"id: 42\r\nevent: order.created\r\ndata: first\r\ndata: second\r\n\r\n"
            b"event: stream.gap\ndata:{\"oldestAvailable\":\"7\"}\n\n")
    found = await parse(wire)
    assert [(m.id, m.event, m.data, m.retry) for m in found] == [
        (None, None, None, 3000),
        ("41", None, '{"eventId":"evt_a"}', None),
        (None, "ping", '{"ping":true}', None),
        ("42", "order.created", "first\nsecond", None),
        (None, "stream.gap", '{"oldestAvailable":"7"}', None),
    ]


async def test_a_message_cut_off_by_the_end_of_the_stream_is_not_delivered() -> None:
    assert await parse(b"id: 1\ndata: {}\n\nid: 2\ndata: {\"half\"") == [Message("1", None, "{}")]
