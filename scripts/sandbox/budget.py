"""Horizon's per-IP request budget (off unless `SANDBOX_HORIZON_REQUESTS_PER_HOUR` or the control plane sets it).

Modelled on Horizon's own limiter (stellar/go `services/horizon/internal/httpx/rate_limiter.go`): a GCRA
quota of `per-hour-rate-limit` (default 3,600) per remote IP with `MaxBurst: 100`
(`services/horizon/internal/flags.go`). Every non-streaming request costs one; a denied one answers the
`rate_limit_exceeded` problem (`render/problem/problem.go`) with the headers `throttled.HTTPLimiter`
writes (`X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`, and `Retry-After` when denied;
throttled/throttled `http.go`). Streams are exempt from that middleware (`httpx/router.go`) and are charged
by `sse.StreamHandler.ServeStream` instead: one unit per pass of its loop (each connection, then each new
ledger), with no rate-limit headers (`render/sse/stream_handler.go`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """One charge: whether it was denied, and the figures the headers report."""

    limited: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after: int

    def headers(self) -> dict[str, str]:
        found = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }
        if self.limited:
            found["Retry-After"] = str(self.retry_after)
        return found


class Budget:
    """A token bucket per IP refilled at `per_hour / 3600` a second, holding at most `burst` (0 = off)."""

    def __init__(self, per_hour: int = 0, burst: int = 100) -> None:
        self.configure(per_hour, burst)

    def configure(self, per_hour: int, burst: int = 100) -> None:
        if per_hour < 0 or burst < 1:
            raise ValueError("requestsPerHour must be >= 0 and burst >= 1")
        self.per_hour, self.burst = per_hour, burst
        self.buckets: dict[str, tuple[float, float]] = {}
        self.charged = 0

    @property
    def on(self) -> bool:
        return self.per_hour > 0

    def charge(self, key: str) -> Verdict | None:
        """Take one unit for `key`; `None` when the budget is off."""
        if not self.on:
            return None
        rate, now = self.per_hour / 3600.0, time.monotonic()
        tokens, at = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * rate)
        limited = tokens < 1.0
        if not limited:
            tokens -= 1.0
            self.charged += 1
        self.buckets[key] = (tokens, now)
        return Verdict(
            limited=limited,
            limit=self.burst,
            remaining=max(0, int(tokens)),
            reset_seconds=math.ceil((self.burst - tokens) / rate),
            retry_after=max(1, math.ceil((1.0 - tokens) / rate)) if limited else 0,
        )
