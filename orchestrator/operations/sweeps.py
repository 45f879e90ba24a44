"""Periodic jobs of the scheduler: republish lost commands, prune what retention allows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.db import airtm as airtm_db
from orchestrator.db import chain_steps as steps_db
from orchestrator.db import commands as commands_db
from orchestrator.db import deposits as deposits_db
from orchestrator.db import idempotency as idempotency_db
from orchestrator.db import outbox as outbox_db
from orchestrator.db import session
from orchestrator.db import topups as topups_db
from orchestrator.db import webhooks as webhooks_db

#: Idempotency records are kept 24 hours after completion (spec api.md §1.10).
IDEMPOTENCY_RETENTION = timedelta(hours=24)


def stale_commands(engine: Any, *, older_than_seconds: float) -> list[str]:
    """Pending commands whose message may be lost; marked republished so the next sweep waits again."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    with session.transaction(engine) as conn:
        ids = commands_db.stale_pending(conn, older_than=cutoff)
        conn.commit()
    return ids


def prune(engine: Any, *, event_retention_days: int) -> dict[str, int]:
    """Drop events past retention (keeping the newest 1,000) and expired idempotency records."""
    now = datetime.now(UTC)
    with session.transaction(engine) as conn:
        events = outbox_db.prune(conn, older_than=now - timedelta(days=event_retention_days))
        keys = idempotency_db.prune(conn, older_than=now - IDEMPOTENCY_RETENTION)
        conn.commit()
    return {"events": events, "idempotencyKeys": keys}


def stale_deposits(engine: Any, *, older_than_seconds: float) -> list[str]:
    """Deposits recorded but not credited: their credit message may have been lost."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    with session.transaction(engine) as conn:
        return deposits_db.stale_pending(conn, older_than=cutoff)


def stalled_steps(engine: Any, *, older_than_seconds: float) -> list[str]:
    """Open chain steps that stopped moving (message lost, retries exhausted): drive them on."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    with session.transaction(engine) as conn:
        ids = steps_db.stalled(conn, older_than=cutoff)
        conn.commit()
    return ids


def airtm_open(engine: Any, *, period_seconds: float) -> tuple[list[str], list[str]]:
    """Open top-ups and AirTM withdrawals that nothing has moved for a while: a webhook may be lost
    (and statuses without a webhook, such as PENDING, arrive only by reads). Marked touched, so the
    next pass waits another period for them."""
    period = timedelta(seconds=period_seconds)
    with session.transaction(engine) as conn:
        topup_ids = topups_db.open_untouched(conn, period=period)
        withdrawal_ids = airtm_db.open_withdrawals(conn, period=period)
        topups_db.touch(conn, topup_ids)
        airtm_db.touch_withdrawals(conn, withdrawal_ids)
        conn.commit()
    return topup_ids, withdrawal_ids


def stale_webhooks(engine: Any, *, older_than_seconds: float) -> list[str]:
    """Recorded AirTM webhook messages not processed yet: their actor message may have been lost."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
    with session.transaction(engine) as conn:
        ids = airtm_db.pending_webhooks(conn, older_than=cutoff)
        conn.commit()
    return ids


def due_webhooks(engine: Any) -> list[str]:
    """Enabled webhook endpoints with a delivery due: a lost message, a killed worker or a retry whose
    time has come (retries past a minute are published only here)."""
    with session.transaction(engine) as conn:
        return webhooks_db.due_endpoints(conn)
