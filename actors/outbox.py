"""Numbers committed outbox events for the stream and wakes the web processes."""

from __future__ import annotations

import dramatiq

from actors.broker import EVENTS, engine
from orchestrator import relay


@dramatiq.actor(queue_name=EVENTS, max_retries=20, min_backoff=100, max_backoff=5_000)
def relay_outbox() -> None:
    relay.relay(engine())
