"""Horizon figures behind the public ``/metrics`` and ``/health/detailed``, kept a few seconds per process.

Both routes are public, and each answer read Horizon (the monitor's lag; ``/health/detailed`` also
probes Horizon itself). Public Horizon allows 3,600 requests an hour per IP (DESIGN decision 12),
shared with the monitor and the chain steps, so a scraper polling every second could spend it all.
Each web process reads each figure at most once per ``HORIZON_READ_CACHE_SECONDS`` (0: every time);
scrapes arriving while a read is in flight wait for that read. Every figure carries when it was
measured, so a cached one is never mistaken for a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from orchestrator.events import now

T = TypeVar("T")


class Cached(Generic[T]):
    """One value, read again only once it is ``seconds`` old; concurrent askers share one read."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = asyncio.Lock()
        self._value: tuple[T, datetime] | None = None
        self._read_at = 0.0

    async def get(self, read: Callable[[], Awaitable[T]]) -> tuple[T, datetime]:
        """The value and when it was measured."""
        async with self._lock:
            if self._value is None or time.monotonic() - self._read_at >= self.seconds:
                started, measured_at = time.monotonic(), now()
                self._value = (await read(), measured_at)
                self._read_at = started
            return self._value


class HorizonReads:
    """The process's cached Horizon figures: the monitor's lag and the health probe of Horizon."""

    def __init__(self, seconds: float) -> None:
        self.monitor_lag: Cached[Any] = Cached(seconds)
        self.probe: Cached[dict[str, Any]] = Cached(seconds)
