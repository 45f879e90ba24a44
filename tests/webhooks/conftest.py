"""A real receiver (an aiohttp server in the test) and the ``webhooks`` Procfile role as a subprocess.

The worker runs with a fast retry schedule given through its settings (``WEBHOOK_RETRY_SCHEDULE``), so the
retry tests wait seconds, not minutes; nothing of ours is mocked.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pytest
from aiohttp import web
from multidict import CIMultiDict
from sqlalchemy import Engine, text

from scripts.ports import free_port
from tests.fixtures import processes

#: The worker's retry schedule in these tests: 1 s, then 2 s repeating (the default is 5 s, 5 min, ...).
FAST_RETRIES = "1,2"


def webhooks_process(prefix: str, **env: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The Procfile's ``webhooks`` role: ``dramatiq actors`` on the webhooks queue only."""
    return processes.process("-m", "dramatiq", "actors", "--processes", "1", "--threads", "4",
                             "--queues", f"{prefix}webhooks", QUEUE_PREFIX=prefix,
                             WEBHOOK_RETRY_SCHEDULE=FAST_RETRIES, **env)


@pytest.fixture(scope="module")
def webhooks_worker(broker: dramatiq.Broker, worker: dramatiq.Worker) -> Iterator[subprocess.Popen[bytes]]:
    from actors.broker import settings

    with webhooks_process(settings.queue_prefix) as child:
        yield child


@pytest.fixture(autouse=True)
def no_endpoints_left(engine: Engine) -> Iterator[None]:
    """Each test starts and ends without endpoints (the instance allows 16; old receivers are gone)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_endpoints"))
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM webhook_endpoints"))


@dataclass
class Received:
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are
    body: bytes
    at: float
    #: The sender's (address, port): a new port is a new connection.
    peer: tuple[str, int] | None = None


@dataclass
class Receiver:
    """Records every request; answers the queued statuses first, then ``status`` (after ``delay`` s)."""

    url: str = ""
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    status: int = 200
    delay: float = 0.0
    answer: bytes = b'{"ok":true}'
    #: Decides the status of one request (over ``statuses`` and ``status``) when set.
    rule: Callable[[Received], int | None] | None = None
    runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        received = Received(CIMultiDict(request.headers), body, time.monotonic(), peer[:2] if peer else None)
        self.requests.append(received)
        if self.delay:
            await asyncio.sleep(self.delay)
        ruled = self.rule(received) if self.rule else None
        status = ruled or (self.statuses.popleft() if self.statuses else self.status)
        return web.Response(status=status, body=self.answer, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        self.url = f"http://127.0.0.1:{self.port}/hooks"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def ids(self) -> set[str]:
        """The receiver's deduplicated set: every event id it received."""
        return {r.headers["webhook-id"] for r in self.requests}

    def of(self, event_id: str) -> list[Received]:
        return [r for r in self.requests if r.headers.get("webhook-id") == event_id]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    await found.start()
    yield found
    await found.stop()


async def eventually(check: Callable[[], Any], seconds: float = 30, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy, serving the loop meanwhile."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
