"""The web tier's AirTM helpers: provider calls off the event loop, the mode check, per-user limits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from orchestrator.errors import BusinessRuleViolation, RateLimited
from orchestrator.providers.airtm import AirtmClient, AirtmFailure
from web import ratelimit
from web.keys import REDIS, SETTINGS

T = TypeVar("T")


def require_backed(request: web.Request, user: Any) -> None:
    """``422 PROVIDER_NOT_ENABLED`` unless ``user`` is AIRTM-backed and AirTM is configured: a user's money in
    and out follow its own backing, whatever ``PAYMENT_PROVIDER`` says now (DESIGN decision 26)."""
    if user.backing != "AIRTM":
        raise BusinessRuleViolation("This user's balance is backed by its own wallet: AirTM top-ups and payouts "
                                    "are not offered to it", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": "airtm", "backing": user.backing})
    if not request.app[SETTINGS].airtm_configured:
        raise BusinessRuleViolation("AirTM is not configured on this instance", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": "airtm"})


def require_configured(request: web.Request) -> None:
    """``422 PROVIDER_NOT_ENABLED`` unless AirTM's credentials are configured: a top-up or AirTM withdrawal
    already recorded is driven on (refresh, commit, cancel) in either mode, since money follows its own backing
    (DESIGN decision 26); only an instance that cannot call AirTM at all refuses."""
    if not request.app[SETTINGS].airtm_configured:
        raise BusinessRuleViolation("AirTM is not configured on this instance", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": "airtm"})


async def call(request: web.Request, fn: Callable[[AirtmClient], T]) -> T:
    """Run ``fn`` with a client in a thread; AirTM's refusals become the API's errors (§3.7)."""
    settings = request.app[SETTINGS]

    def run() -> T:
        with AirtmClient(settings) as client:
            return fn(client)

    try:
        return await asyncio.get_running_loop().run_in_executor(None, run)
    except AirtmFailure as failure:
        raise failure.public() from None


async def limit_per_user(request: web.Request, what: str, user_id: str, per_minute: int) -> None:
    """api.md §1.11's per-user limits (on when the general limit is on); fail-open like it."""
    settings = request.app[SETTINGS]
    if settings.rate_limit_per_minute <= 0:
        return
    window = await ratelimit.hit(request.app[REDIS], settings.redis_prefix, f"{what}:{user_id}", per_minute)
    if not window.allowed:
        raise RateLimited(f"Too many {what} for this user", details={
            "limit": per_minute, "windowSeconds": ratelimit.WINDOW, "retryAfter": ratelimit.WINDOW})
