"""Outbound webhooks measured for ``scripts/bench.py`` (its ``webhooks`` part, issue 17).

``--webhook-endpoints`` (10) endpoints deliver ``balance.credited`` to one receiver in this process. Two
phases: ``--rounds`` credits one at a time, each timed from sending it until every endpoint has it
(event -> delivery latency, beside the SSE fan-out's of the same run); then ``--webhook-burst`` credits
sent at once, and the deliveries per second until every endpoint has every one of them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from scripts.loopback import LoopbackServer

Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass
class Measured:
    """What one run of the part saw."""

    latencies_ms: list[float] = field(default_factory=list)
    burst_rate: float = 0.0
    deliveries: int = 0
    missing: int = 0
    duplicates: int = 0


class Receiver:
    """Answers every delivery 204 and notes when each endpoint got each event (first time only)."""

    def __init__(self, endpoints: int) -> None:
        self.arrivals: list[dict[str, float]] = [{} for _ in range(endpoints)]
        self.duplicates = 0
        self.changed = asyncio.Event()
        self._server = LoopbackServer()
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook/{n}", self._handle)
        self.url = await self._server.start(app)

    async def stop(self) -> None:
        await self._server.stop()

    async def _handle(self, request: web.Request) -> web.Response:
        seen = self.arrivals[int(request.match_info["n"])]
        event_id = request.headers["webhook-id"]
        if event_id in seen:
            self.duplicates += 1
        else:
            seen[event_id] = time.perf_counter()
            self.changed.set()
        await request.read()
        return web.Response(status=204)

    def count(self) -> int:
        return sum(len(seen) for seen in self.arrivals)

    async def wait_for(self, total: int, seconds: float) -> bool:
        """Until the endpoints hold ``total`` deliveries between them (``False`` when the time ran out)."""
        deadline = time.monotonic() + seconds
        while self.count() < total:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return False
        return True


async def measure(post: Post, user: str, *, endpoints: int, rounds: int, burst: int) -> Measured:
    """Register the endpoints, then time the rounds and the burst (credits to ``user``)."""
    receiver = Receiver(endpoints)
    await receiver.start()
    out = Measured()
    try:
        for n in range(endpoints):
            await post("/webhooks/endpoints", {"url": f"{receiver.url}/hook/{n}", "eventTypes": ["balance.credited"],
                                               "description": f"bench {n}"})
        for _ in range(rounds):
            before = receiver.count()
            sent = time.perf_counter()
            await post(f"/users/{user}/balance/credit", {"amount": "1.00"})
            if not await receiver.wait_for(before + endpoints, 30):
                out.missing += before + endpoints - receiver.count()
            out.latencies_ms += [(max(seen.values()) - sent) * 1000 for seen in receiver.arrivals if seen]
        before = receiver.count()
        sent = time.perf_counter()
        gate = asyncio.Semaphore(16)

        async def credit() -> None:
            async with gate:
                await post(f"/users/{user}/balance/credit", {"amount": "1.00"})

        await asyncio.gather(*(credit() for _ in range(burst)))
        expected = before + endpoints * burst
        await receiver.wait_for(expected, 120)
        last = max(max(seen.values()) for seen in receiver.arrivals)
        out.deliveries = receiver.count() - before
        out.burst_rate = out.deliveries / (last - sent) if last > sent else 0.0
        out.missing += expected - receiver.count()
        out.duplicates = receiver.duplicates
    finally:
        await receiver.stop()
    return out
