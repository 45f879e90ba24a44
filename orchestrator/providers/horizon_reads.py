"""Horizon reads for the web tier: one account's balances and its latest payments.

The web tier answers callers while they wait, so these reads get a short timeout and no retries; a
failure of Horizon (no answer, 5xx, an unreadable body) is ``STELLAR_NETWORK_ERROR``, and its rate limit
(429) is ``PROVIDER_RATE_LIMITED`` with Horizon's ``Retry-After`` passed on to the caller (stellar/go
``services/horizon/internal/httpx/rate_limiter.go`` sets it on every refused request). Amounts are kept
as the ledger writes them (seven decimals), never passed through a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp

from orchestrator.errors import ProviderFailure
from orchestrator.settings import Settings

#: Seconds a whole read may take (Horizon answers account reads in tens of milliseconds).
TIMEOUT = 5.0


@dataclass(frozen=True)
class AccountBalances:
    """What a wallet holds on the ledger; ``usdc`` is ``None`` without a trustline to the configured USDC."""

    account_id: str
    xlm: Decimal
    usdc: Decimal | None
    data: dict[str, str] = field(default_factory=dict)  # SEP-29 ``config.memo_required`` lives here

    @property
    def memo_required(self) -> bool:
        return self.data.get("config.memo_required") == "MQ=="


class HorizonReader:
    """An async context manager over one HTTP session: ``async with HorizonReader(settings) as horizon``."""

    def __init__(self, settings: Settings, *, timeout: float = TIMEOUT) -> None:
        self.url = settings.horizon_url.rstrip("/")
        self.usdc = (settings.usdc_asset_code, settings.usdc_issuer)
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HorizonReader:
        self.http = aiohttp.ClientSession(timeout=self.timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.http is not None:
            await self.http.close()

    async def account(self, account_id: str) -> AccountBalances | None:
        """The account's XLM and USDC (code AND issuer must match), or ``None`` when it does not exist."""
        raw = await self._get(f"/accounts/{account_id}", {})
        if raw is None:
            return None
        xlm, usdc = Decimal(0), None
        try:
            for balance in raw.get("balances", []):
                if balance.get("asset_type") == "native":
                    xlm = Decimal(balance["balance"])
                elif (balance.get("asset_code"), balance.get("asset_issuer")) == self.usdc:
                    usdc = Decimal(balance["balance"])
        except (KeyError, TypeError, InvalidOperation) as error:
            raise _failure(f"unreadable account record: {error!r}") from error
        return AccountBalances(account_id, xlm, usdc, dict(raw.get("data") or {}))

    async def payments(self, account_id: str, limit: int) -> list[dict[str, Any]]:
        """The account's latest ``limit`` payment records, newest first (none for an unknown account)."""
        raw = await self._get(f"/accounts/{account_id}/payments", {"order": "desc", "limit": str(limit)})
        if raw is None:
            return []
        try:
            return list(raw["_embedded"]["records"])
        except (KeyError, TypeError) as error:
            raise _failure(f"unreadable payments page: {error!r}") from error

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The JSON body of a GET; ``None`` on 404; ``STELLAR_NETWORK_ERROR`` on anything else that failed."""
        if self.http is None:
            raise RuntimeError("HorizonReader is used outside `async with`")
        try:
            async with self.http.get(f"{self.url}{path}", params=params) as response:
                if response.status == 404:
                    return None
                if response.status == 429:
                    raise _rate_limited(response.headers.get("Retry-After"), path)
                if response.status != 200:
                    raise _failure(f"Horizon answered {response.status} to GET {path}")
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            raise _failure(f"Horizon did not answer GET {path}: {type(error).__name__}") from error


def _failure(message: str) -> ProviderFailure:
    return ProviderFailure(message, code="STELLAR_NETWORK_ERROR")


def _rate_limited(retry_after: str | None, path: str) -> ProviderFailure:
    seconds = int(retry_after) if retry_after and retry_after.isdigit() else 1
    return ProviderFailure(f"Horizon's rate limit refused GET {path}; retry in {seconds} s",
                           code="PROVIDER_RATE_LIMITED", details={"provider": "horizon", "retryAfter": seconds})
