"""``AsyncClient`` (the implementation) and ``Client`` (the same methods, run on a private event loop).

The sync client holds no second copy of any resource: each call builds the async method's coroutine and runs
it on a loop thread the client owns, and each async iterator (list pages, the event stream) is driven the
same way one item at a time. So the two clients cannot drift apart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import signal
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

from orchestrator.client.events import Events
from orchestrator.client.resources import (
    GROUPS,
    ApiKeys,
    AuditLogs,
    Balance,
    Disputes,
    Orders,
    System,
    TopUps,
    Users,
    Wallet,
    Webhooks,
    Withdrawals,
)
from orchestrator.client.transport import Config, Transport

T = TypeVar("T")


class AsyncClient:
    """``async with AsyncClient(api_url, api_key) as client: await client.users.create(external_user_id=…)``.

    ``api_url`` may end with or without ``/api/v1``; both default to OFFERHUB_API_URL / OFFERHUB_API_KEY.
    ``timeout`` defaults to the server's command wait plus 10 s; ``retries`` counts retries after the first try.
    """

    users: Users
    balance: Balance
    wallet: Wallet
    orders: Orders
    disputes: Disputes
    topups: TopUps
    withdrawals: Withdrawals
    api_keys: ApiKeys
    audit_logs: AuditLogs
    system: System
    webhooks: Webhooks
    events: Events

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float | None = None,
                 retries: int = 3, headers: Mapping[str, str] | None = None, backoff: float = 1.0) -> None:
        self._setup(Transport(Config.from_values(api_url, api_key, timeout=timeout, retries=retries,
                                                 backoff=backoff, headers=headers)))

    def _setup(self, transport: Transport) -> None:
        self._transport = transport
        for name, group in GROUPS.items():
            setattr(self, name, group(transport))
        self.events = Events(transport)

    @property
    def config(self) -> Config:
        return self._transport.config

    def with_headers(self, headers: Mapping[str, str]) -> AsyncClient:
        """A new client sending ``headers`` on every request too (its own connection pool)."""
        client = AsyncClient.__new__(AsyncClient)
        client._setup(self._transport.derive(headers={**self.config.headers, **headers}))
        return client

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


#: Signals that only the caller's (main) thread may take: Python runs their handlers there alone.
CALLER_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
#: How long closing a stream, the session or the loop may each take once the caller has stopped (Ctrl-C
#: must end a command within a second); a clean close of either is local work of a few milliseconds.
CLOSE_SECONDS = 0.3


class _Loop:
    """An event loop on a daemon thread of its own, for the sync client.

    The loop thread (and every thread it starts, such as the resolver's pool, which inherit its mask) blocks
    SIGINT and SIGTERM. The kernel may hand a process-directed signal to any thread that does not block it;
    one taken by the loop thread only flags the main thread, which sleeps in an uninterruptible lock wait
    until the next event arrives, so Ctrl-C on an idle stream was lost until then (issue 19).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="offerhub-sdk", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # POSIX; elsewhere the console delivers Ctrl-C to the main thread
            signal.pthread_sigmask(signal.SIG_BLOCK, CALLER_SIGNALS)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait for it (at most ``timeout`` s, then cancel it)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            if not future.done():  # Ctrl-C in the caller, or the wait ran out: stop the work on the loop too
                future.cancel()
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self.run(_next(iterator))
                except StopAsyncIteration:
                    return
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and self.loop.is_running():
                # RuntimeError: still running after a cancelled step, which closes it as it unwinds
                with contextlib.suppress(RuntimeError, TimeoutError, concurrent.futures.CancelledError):
                    self.run(closer(), CLOSE_SECONDS)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=CLOSE_SECONDS)
        if not self.loop.is_running():
            self.loop.close()


async def _next(iterator: AsyncIterator[T]) -> T:
    return await iterator.__anext__()


class _Sync:
    """A resource group whose coroutine methods return results and whose async iterators are plain ones."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target, self._loop = target, loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if inspect.iscoroutine(result):
                return self._loop.run(result)
            if isinstance(result, AsyncIterator):
                return self._loop.iterate(result)
            return result

        return call

    def __dir__(self) -> list[str]:
        return [n for n in dir(self._target) if not n.startswith("_")]


class Client:
    """The synchronous client: ``with Client(api_url, api_key) as client: client.orders.get("ord_…")``.

    Every resource group and method of ``AsyncClient``, with the same arguments, returning plain values;
    list ``iterate`` methods and ``events.stream()`` are ordinary iterators.
    """

    users: Any
    balance: Any
    wallet: Any
    orders: Any
    disputes: Any
    topups: Any
    withdrawals: Any
    api_keys: Any
    audit_logs: Any
    system: Any
    webhooks: Any
    events: Any

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float | None = None,
                 retries: int = 3, headers: Mapping[str, str] | None = None, backoff: float = 1.0) -> None:
        self._wrap(AsyncClient(api_url, api_key, timeout=timeout, retries=retries, headers=headers, backoff=backoff))

    def _wrap(self, inner: AsyncClient) -> None:
        self._async, self._loop = inner, _Loop()
        for name in [*GROUPS, "events"]:
            setattr(self, name, _Sync(getattr(inner, name), self._loop))

    @property
    def config(self) -> Config:
        return self._async.config

    def with_headers(self, headers: Mapping[str, str]) -> Client:
        client = Client.__new__(Client)
        client._wrap(self._async.with_headers(headers))
        return client

    def close(self) -> None:
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.run(self._async.close(), CLOSE_SECONDS)
        except (TimeoutError, concurrent.futures.CancelledError):
            pass  # the process is leaving: its sockets close with it
        finally:
            self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
