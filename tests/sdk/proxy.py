"""A small HTTP proxy in front of the real API that injects faults a load balancer or network would cause.

It runs on its own thread and event loop, so sync and async clients can both go through it. Faults:
answer 503/429 before forwarding, forward and then lose the answer (replace it with a 503), and cut every
open event stream. Every request it sees is recorded (method, path, headers).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass
class Fault:
    status: int
    after_forwarding: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    path_contains: str = ""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    answered: int


class FaultyProxy:
    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.streams: set[web.StreamResponse] = set()
        self.loop = asyncio.new_event_loop()
        self.url = ""

    # -- control (from the test's thread) --

    def fail(self, status: int, times: int = 1, *, after_forwarding: bool = False, path_contains: str = "",
             **headers: str) -> None:
        self.faults.extend(Fault(status, after_forwarding, headers, path_contains) for _ in range(times))

    def cut_streams(self) -> int:
        """Close every open event stream's connection; returns how many were cut."""
        future = asyncio.run_coroutine_threadsafe(self._cut(), self.loop)
        return future.result(5)

    def requests_to(self, fragment: str) -> list[Seen]:
        return [s for s in self.seen if fragment in s.path]

    # -- the server --

    async def _cut(self) -> int:
        cut = 0
        for response in list(self.streams):
            task = getattr(response, "_task", None)
            if task is not None:
                task.cancel()
                cut += 1
        return cut

    def _take_fault(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.path_contains in path:
                self.faults.remove(fault)
                return fault
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        fault = self._take_fault(request.path_qs)
        if fault is not None and not fault.after_forwarding:
            self.seen.append(Seen(request.method, request.path_qs, headers, fault.status))
            return web.Response(status=fault.status, text="injected by the test proxy", headers=fault.headers)
        url = f"{self.target}{request.path_qs}"
        if request.headers.get("Accept") == "text/event-stream":
            return await self._stream(request, url, headers)
        async with self.session.request(request.method, url, data=body or None, headers=headers) as upstream:
            payload = await upstream.read()
            if fault is not None:  # the server did the work; its answer is lost on the way back
                self.seen.append(Seen(request.method, request.path_qs, headers, fault.status))
                return web.Response(status=fault.status, text="answer lost by the test proxy", headers=fault.headers)
            self.seen.append(Seen(request.method, request.path_qs, headers, upstream.status))
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=out)

    async def _stream(self, request: web.Request, url: str, headers: dict[str, str]) -> web.StreamResponse:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(url, headers=headers, timeout=timeout) as upstream:
            self.seen.append(Seen(request.method, request.path_qs, headers, upstream.status))
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
            response = web.StreamResponse(status=upstream.status, headers=out)
            await response.prepare(request)
            response._task = asyncio.current_task()  # type: ignore[attr-defined]
            self.streams.add(response)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except asyncio.CancelledError:
                if request.transport is not None:
                    request.transport.close()  # a hard cut: the client sees the connection drop
                raise
            finally:
                self.streams.discard(response)
            return response

    async def _start(self) -> web.AppRunner:
        self.session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return runner

    async def _stop(self, runner: web.AppRunner) -> None:
        await self._cut()
        await self.session.close()
        await runner.cleanup()


@contextmanager
def faulty_proxy(target: str) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(target)
    thread = threading.Thread(target=proxy.loop.run_forever, daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(proxy._start(), proxy.loop).result(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy._stop(runner), proxy.loop).result(10)
        proxy.loop.call_soon_threadsafe(proxy.loop.stop)
        thread.join(5)
        proxy.loop.close()
