"""The sandbox clock: wall time plus an offset the control plane can advance."""

from __future__ import annotations

import time as _time
from datetime import UTC, datetime, timedelta


class Clock:
    """Used for time bounds, `created_at`, expiries and webhook schedules, so tests can skip ahead."""

    def __init__(self) -> None:
        self._offset = 0.0

    def time(self) -> float:
        """Unix seconds on the sandbox clock."""
        return _time.time() + self._offset

    def now(self) -> datetime:
        """A timezone-aware UTC datetime on the sandbox clock."""
        return datetime.now(UTC) + timedelta(seconds=self._offset)

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never backward: time bounds must stay monotonic)."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward")
        self._offset += seconds

    def reset(self) -> None:
        self._offset = 0.0

    def to_state(self) -> dict[str, float]:
        """The offset only: wall time goes on while the sandbox is stopped, as it would on a network."""
        return {"offset": self._offset}

    def from_state(self, state: dict[str, float]) -> None:
        self._offset = float(state["offset"])

    @property
    def offset(self) -> float:
        return self._offset
