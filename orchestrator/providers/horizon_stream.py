"""Horizon's payment stream and payment pages, read asynchronously by the monitor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from stellar_sdk import ServerAsync
from stellar_sdk.client.aiohttp_client import AiohttpClient


class BeforeHistory(Exception):
    """Raised when a cursor is older than the history Horizon keeps (``410``)."""


class PaymentStream:
    """The network-wide ``/payments`` stream from a cursor, plus the page reads reconciliation needs."""

    def __init__(self, horizon_url: str) -> None:
        self.url = horizon_url.rstrip("/")
        self.server: ServerAsync | None = None
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PaymentStream:
        self.server = ServerAsync(self.url, client=AiohttpClient(request_timeout=30))
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            await self.server.close()
        if self.http is not None:
            await self.http.close()

    def stream(self, cursor: str) -> AsyncIterator[dict[str, Any]]:
        """Records strictly after ``cursor``, then live ones; the SDK reconnects by itself on clean ends."""
        assert self.server is not None
        return self.server.payments().cursor(cursor).stream()

    async def page(self, path: str, **params: str) -> list[dict[str, Any]]:
        """One page of payment records; ``BeforeHistory`` for a cursor Horizon no longer keeps."""
        assert self.http is not None
        async with self.http.get(f"{self.url}{path}", params=params) as response:
            if response.status == 410:
                raise BeforeHistory(params.get("cursor", ""))
            response.raise_for_status()
            body = await response.json()
        return body["_embedded"]["records"]

    async def latest_cursor(self) -> str:
        """The newest payment's paging token ("0" on an empty ledger): where a first start begins."""
        records = await self.page("/payments", order="desc", limit="1")
        return str(records[0]["paging_token"]) if records else "0"

    async def check_cursor(self, cursor: str) -> None:
        await self.page("/payments", cursor=cursor, order="asc", limit="1")

    async def account_payments(self, account: str, cursor: str | None, limit: int = 200) -> list[dict[str, Any]]:
        params = {"order": "asc", "limit": str(limit)}
        if cursor:
            params["cursor"] = cursor
        return await self.page(f"/accounts/{account}/payments", **params)
