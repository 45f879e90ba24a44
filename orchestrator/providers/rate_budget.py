"""A request budget shared by every process through Redis (DESIGN "The chain": TW allows 50 calls a minute).

TW counts requests over a rolling 60 s per API key, so the budget is a sliding-window log of the same
shape: a sorted set of request times, trimmed and counted atomically by one Lua script, with Redis's
clock as the only clock (workers on other hosts may drift).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import redis

from orchestrator.errors import ProviderFailure

#: KEYS[1] = window set; ARGV = limit, window ms, unique member. Returns 0 when a slot was taken,
#: else the milliseconds until the oldest request leaves the window.
_TAKE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

#: Fill the window with ``count`` entries that leave it after ARGV[4] ms: after a 429 every process
#: waits what the provider's Retry-After asks (a full window when it gave none).
_FILL = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local stamp = now - tonumber(ARGV[3]) + tonumber(ARGV[4])
for i = 1, tonumber(ARGV[1]) do
  redis.call('ZADD', KEYS[1], stamp, ARGV[2] .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 0
"""


class RateBudget:
    """At most ``per_minute`` requests in any rolling minute, across every process using ``key_prefix``.

    ``per_minute`` 0 turns the budget off (benchmarks against a sandbox whose own limit is off).
    """

    def __init__(self, client: redis.Redis, key_prefix: str, *, per_minute: int = 45, name: str = "trustless",
                 window_seconds: float = 60.0, max_wait_seconds: float = 10.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.key = f"{key_prefix}rate-budget:{name}"
        self.per_minute = per_minute
        self.window_ms = int(window_seconds * 1000)
        self.max_wait = max_wait_seconds
        self._sleep = sleep
        self._take = client.register_script(_TAKE)
        self._fill = client.register_script(_FILL)

    def try_take(self) -> float:
        """Take one request slot; 0.0 when taken, else the seconds until one frees up."""
        if self.per_minute <= 0:
            return 0.0
        wait_ms = self._take(keys=[self.key], args=[self.per_minute, self.window_ms, secrets.token_hex(8)])
        return int(wait_ms) / 1000

    def take(self) -> None:
        """Block (in short sleeps) until a slot is free; past ``max_wait_seconds`` raise PROVIDER_RATE_LIMITED.

        Bounded so a chain worker hands the step back to the queue's backoff instead of sitting idle.
        """
        deadline = time.monotonic() + self.max_wait
        while True:
            wait = self.try_take()
            if wait == 0:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProviderFailure("The shared Trustless Work request budget is spent", code="PROVIDER_RATE_LIMITED",
                                      details={"provider": "trustless_work", "retryAfter": max(1, round(wait))})
            self._sleep(min(wait, remaining, 1.0))

    def exhaust(self, retry_after_seconds: float | None = None) -> None:
        """After the provider's 429 nobody calls for ``Retry-After`` seconds (the whole window without one)."""
        if self.per_minute > 0:
            hold_ms = self.window_ms if retry_after_seconds is None else min(self.window_ms,
                                                                             int(retry_after_seconds * 1000))
            self._fill(keys=[self.key], args=[self.per_minute, secrets.token_hex(8), self.window_ms, hold_ms])
