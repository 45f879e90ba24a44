"""Numbers committed outbox events for the stream and wakes the web processes."""

from __future__ import annotations

import dramatiq

from actors.broker import EVENTS, engine
from orchestrator import relay

#: How long a busy relay waits before looking again (the holder's last pass may have missed us).
BUSY_RETRY_MS = 50


@dramatiq.actor(queue_name=EVENTS, max_retries=50, min_backoff=50, max_backoff=1_000)
def relay_outbox() -> None:
    try:
        relay.relay(engine())
    except relay.RelayBusy:
        raise dramatiq.Retry("another relay is numbering", delay=BUSY_RETRY_MS) from None
