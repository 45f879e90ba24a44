"""The outbox relay: gap-free stream positions in commit order, then a ``NOTIFY`` to the web tier."""

from __future__ import annotations

from typing import Any

from orchestrator.db import outbox as outbox_db
from orchestrator.db import session

#: Channel the web processes LISTEN on; the payload is the highest position just assigned.
EVENTS_CHANNEL = "outbox_events"


def relay(engine: Any) -> int | None:
    """Number every committed, unnumbered event; returns the highest position assigned, if any."""
    with session.transaction(engine) as conn:
        top = outbox_db.assign_positions(conn)
        if top is not None:
            session.notify(conn, EVENTS_CHANNEL, str(top))
        conn.commit()
    return top
