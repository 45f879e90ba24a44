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


class _Loop:
    """An event loop on a daemon thread of its own, for the sync client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="offerhub-sdk", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():  # Ctrl-C in the caller: stop the work on the loop too
                future.cancel()
                with contextlib.suppress(concurrent.futures.CancelledError, Exception):
                    future.result(timeout=5)
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
                # RuntimeError: still running after a cancelled step; the loop drops it when it stops
                with contextlib.suppress(RuntimeError):
                    self.run(closer())

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)
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
        self._loop.run(self._async.close())
        self._loop.stop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
