"""The outbox relay: gap-free stream positions in commit order, then a ``NOTIFY`` to the web tier.

The same pass, under the same lock, chains the committed audit entries (DESIGN decisions 14, 15).
"""

from __future__ import annotations

from typing import Any

from orchestrator import audit
from orchestrator.db import outbox as outbox_db
from orchestrator.db import session

#: Channel the web processes LISTEN on; the payload is the highest position just assigned.
EVENTS_CHANNEL = "outbox_events"


def relay(engine: Any) -> int | None:
    """Number every committed, unnumbered event and chain every committed audit entry; returns the
    highest event position assigned, if any."""
    with session.transaction(engine) as conn:
        top = outbox_db.assign_positions(conn)  # takes the relay lock, held until commit
        audit.chain_committed(conn)
        if top is not None:
            session.notify(conn, EVENTS_CHANNEL, str(top))
        conn.commit()
    return top
