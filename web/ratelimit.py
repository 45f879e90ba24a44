"""Fixed-window request limits in Redis (spec api.md §1.11); fail-open when Redis is unreachable."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
WINDOW = 60


@dataclass(frozen=True)
class Window:
    limit: int
    remaining: int
    reset: int
    allowed: bool

    def headers(self) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


async def hit(redis: Redis, prefix: str, identity: str, limit: int, window: int = WINDOW) -> Window:
    """Count one request for ``identity`` in the current window; ``limit`` 0 means unlimited."""
    now = int(time.time())
    start = now - now % window
    reset = start + window
    if limit <= 0:
        return Window(0, 0, reset, True)
    key = f"{prefix}rl:{identity}:{start}"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, window + 1)
            count, _ = await pipe.execute()
    except (RedisError, OSError, TimeoutError):
        log.warning("Rate limiter unavailable; allowing the request (fail-open)")
        return Window(limit, limit, reset, True)
    return Window(limit, max(0, limit - int(count)), reset, int(count) <= limit)
