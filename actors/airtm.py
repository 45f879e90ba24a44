"""AirTM actors (thin): create pay-ins and payouts, re-read them, process recorded webhooks.

Each runs its provider call outside any transaction and applies the answer in one; a redelivered
message finds the work done (or adopts it by ``code``) and changes nothing.
"""

from __future__ import annotations

import dramatiq

from actors.broker import COMMANDS, engine, settings
from actors.dispatch import dispatch
from orchestrator.airtm import sync

_RETRY = {"queue_name": COMMANDS, "max_retries": 6, "min_backoff": 500, "max_backoff": 20_000}


@dramatiq.actor(**_RETRY)  # type: ignore[call-overload]
def airtm_create_payin(topup_id: str, flow: str = "") -> None:
    dispatch(sync.create_payin(engine(), settings, topup_id, flow))


@dramatiq.actor(**_RETRY)  # type: ignore[call-overload]
def airtm_create_payout(withdrawal_id: str, flow: str = "") -> None:
    dispatch(sync.create_payout(engine(), settings, withdrawal_id, flow))


@dramatiq.actor(**_RETRY)  # type: ignore[call-overload]
def airtm_refresh(resource: str, resource_id: str) -> None:
    """Re-read one open top-up or withdrawal (the periodic refresh behind lost webhooks)."""
    refresh = sync.refresh_topup if resource == "topup" else sync.refresh_withdrawal
    dispatch(refresh(engine(), settings, resource_id))


@dramatiq.actor(**_RETRY)  # type: ignore[call-overload]
def process_airtm_webhook(message_id: str) -> None:
    dispatch(sync.process_webhook(engine(), settings, message_id))
