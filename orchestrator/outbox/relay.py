"""The outbox relay: gap-free stream positions in commit order, then a ``NOTIFY`` to the web tier.

The same pass, under the same lock, chains the committed audit entries (DESIGN decisions 14, 15) and
creates one webhook delivery per (event, matching endpoint) for the events it numbered (decision 18), so
a delivery exists exactly when its event has a position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator import audit
from orchestrator.db import outbox as outbox_db
from orchestrator.db import session
from orchestrator.db import webhooks as webhooks_db

#: Channel the web processes LISTEN on; the payload is the highest position just assigned.
EVENTS_CHANNEL = "outbox_events"


def relay(engine: Any, on_deliveries: Callable[[list[str]], None] | None = None) -> int | None:
    """Number every committed, unnumbered event and chain every committed audit entry; returns the
    highest event position assigned, if any. ``on_deliveries`` is told, after the commit, which webhook
    endpoints received new deliveries (the scheduler's sweep covers a caller that passes none)."""
    with session.transaction(engine) as conn:
        before = outbox_db.lock_relay(conn)  # held until the commit
        top = outbox_db.assign_positions(conn, last=before)
        audit.chain_committed(conn)
        endpoints: list[str] = []
        if top is not None:
            endpoints = webhooks_db.create_deliveries(conn, after=before, upto=top)
            session.notify(conn, EVENTS_CHANNEL, str(top))
        conn.commit()
    if endpoints and on_deliveries is not None:
        on_deliveries(endpoints)
    return top
