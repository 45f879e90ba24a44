"""Horizon's payment stream, payment pages and root document, read asynchronously by the monitor.

Rules from Horizon's own source (stellar/go ``services/horizon``, the last tree before it moved out):

- an ascending query never answers ``410``: before the oldest ledger kept it starts there, beyond the newest
  record it returns an empty page (``internal/actions/helpers.go``, ``validateAndAdjustCursor``). So the
  monitor compares its cursor with the root document (``network_passphrase``, ``history_elder_ledger``,
  ``history_latest_ledger``, ``core_latest_ledger``; ``internal/resourceadapter/root.go``) instead;
- every request but a stream costs one unit of a per-IP budget (``--per-hour-rate-limit``, 3,600 by
  default, burst 100; ``internal/flags.go``) and a refused one is a ``429`` problem with ``Retry-After``
  and ``X-RateLimit-*`` (``internal/httpx/rate_limiter.go`` with throttled's ``HTTPLimiter``);
- a stream costs one unit per pass (the connection, then each new ledger) and carries at most ``limit``
  records before a ``"byebye"`` ends it (``internal/render/sse/stream_handler.go``); a refused stream is a
  ``429`` without ``Retry-After``, or an ``event: error`` with ``Rate limit exceeded`` once it has begun
  (``internal/render/sse/stream.go``). Hence our own SSE reader: the SDK's drops that error event and
  turns the ``429`` into a bare ``ConnectionError``, losing the wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)
#: Records per stream connection (Horizon's largest page; its default of 10 would mean a reconnection,
#: and so a unit of the budget, every ten records).
STREAM_LIMIT = 200
#: The wait after a 429 that names none (a refused stream), doubled on each refusal in a row.
FIRST_RATE_WAIT = 5.0
#: The longest wait for the budget we accept before we say so in the logs and try again.
MAX_RATE_WAIT = 300.0
#: Reads tried this many times when Horizon asks us to wait.
RATE_ATTEMPTS = 8


class BeforeHistory(Exception):
    """Kept for callers of older versions: Horizon answers ``410`` only to descending queries."""


class RateLimited(Exception):
    """Horizon refused the request for the per-IP budget; ``retry_after`` seconds to wait (None: unsaid)."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"rate limited (Retry-After {retry_after})")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Root:
    """What ``GET /`` says about the history this Horizon serves."""

    passphrase: str
    elder_ledger: int
    latest_ledger: int
    core_latest_ledger: int

    @classmethod
    def of(cls, body: dict[str, Any]) -> Root:
        latest = int(body.get("history_latest_ledger") or 0)
        return cls(str(body.get("network_passphrase") or ""), int(body.get("history_elder_ledger") or 1), latest,
                   int(body.get("core_latest_ledger") or latest))


def ledger_of(paging_token: str | int) -> int:
    """The ledger a TOID paging token belongs to (ledger << 32 | order << 12 | index)."""
    return int(paging_token) >> 32


def retry_after(response: aiohttp.ClientResponse) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None  # not money: seconds
    except ValueError:
        return None


class PaymentStream:
    """The network-wide ``/payments`` stream from a cursor, the page reads reconciliation needs, and ``GET /``.

    Every read waits as Horizon asks when it is rate limited (``Retry-After``, or a doubling wait when the
    answer names none) and tries again; ``waited`` counts the seconds spent so."""

    def __init__(self, horizon_url: str, *, max_rate_wait: float = MAX_RATE_WAIT) -> None:
        self.url = horizon_url.rstrip("/")
        self.max_rate_wait = max_rate_wait
        self.http: aiohttp.ClientSession | None = None
        self.waited = 0.0
        self._refusals = 0

    async def __aenter__(self) -> PaymentStream:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()

    async def wait_for_budget(self, error: RateLimited) -> None:
        """Sleep as long as Horizon asked (capped), or a doubling wait when it did not say."""
        self._refusals += 1
        seconds = error.retry_after if error.retry_after is not None else FIRST_RATE_WAIT * 2 ** (self._refusals - 1)
        seconds = min(seconds, self.max_rate_wait)
        log.warning("Horizon's request budget is spent; waiting %.1f s as it asks", seconds)
        self.waited += seconds
        await asyncio.sleep(seconds)

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        assert self.http is not None, "PaymentStream is used outside `async with`"
        for _ in range(RATE_ATTEMPTS):
            async with self.http.get(f"{self.url}{path}", params=params) as response:
                if response.status != 429:
                    response.raise_for_status()
                    self._refusals = 0
                    return await response.json(content_type=None)
                refused = RateLimited(retry_after(response))
            await self.wait_for_budget(refused)
        raise refused

    async def root(self) -> Root:
        return Root.of(await self._get("/", {}))

    async def page(self, path: str, **params: str) -> list[dict[str, Any]]:
        """One page of payment records."""
        return list((await self._get(path, params))["_embedded"]["records"])

    async def latest_cursor(self) -> str:
        """The newest payment's paging token ("0" on an empty ledger): where a first start begins."""
        records = await self.page("/payments", order="desc", limit="1")
        return str(records[0]["paging_token"]) if records else "0"

    async def account_payments(self, account: str, cursor: str | None, limit: int = 200) -> list[dict[str, Any]]:
        params = {"order": "asc", "limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        return await self.page(f"/accounts/{account}/payments", **params)

    async def stream(self, cursor: str, path: str = "/payments") -> AsyncIterator[dict[str, Any]]:
        """Records strictly after ``cursor``, then live ones, across Horizon's reconnections ("byebye" after
        ``STREAM_LIMIT`` records, a 5-minute connection lifetime); waits out rate limits; raises on anything
        else (the caller resumes from its stored cursor)."""
        assert self.http is not None, "PaymentStream is used outside `async with`"
        timeout = aiohttp.ClientTimeout(total=300, sock_connect=30)
        while True:
            params = {"cursor": cursor, "limit": str(STREAM_LIMIT)}
            try:
                async with self.http.get(f"{self.url}{path}", params=params, timeout=timeout,
                                         headers={"Accept": "text/event-stream"}) as response:
                    if response.status == 429:
                        raise RateLimited(retry_after(response))
                    response.raise_for_status()
                    async for event, data, event_id in _events(response):
                        if event == "error":
                            if "rate limit" in data.lower():
                                raise RateLimited(None)
                            raise ConnectionError(f"Horizon ended the stream: {data}")
                        if event_id and data.startswith("{"):
                            self._refusals = 0
                            cursor = event_id
                            yield json.loads(data)
            except RateLimited as refused:
                await self.wait_for_budget(refused)
            except TimeoutError:
                continue  # the connection's lifetime is over: resume from the last record


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str, str]]:
    """Server-sent events as (event, data, id); comments and ``retry:`` lines are skipped."""
    event, event_id = "message", ""
    data: list[str] = []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, data, event_id = "message", [], ""
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                event_id = value
