"""Delivers outbound webhooks on a queue of their own (``webhooks``, its own Procfile role), so operators
size delivery apart from commands and a slow receiver never holds up money movement."""

from __future__ import annotations

import logging

import dramatiq

from actors.broker import WEBHOOKS, engine, settings
from orchestrator import webhook_delivery

log = logging.getLogger(__name__)
#: A drain that leaves deliveries due within this many seconds sends itself a delayed message for them;
#: later retries (5 min and more) are found by the scheduler's sweep.
SHORT_WAIT_SECONDS = 60.0


@dramatiq.actor(queue_name=WEBHOOKS, max_retries=20, min_backoff=500, max_backoff=30_000,
                time_limit=600_000)
def deliver_webhooks(endpoint_id: str) -> None:
    """Deliver what is due to one endpoint (a duplicate message finds the endpoint locked or nothing due)."""
    from actors.dispatch import dispatch  # dispatch imports the relay, whose callers import this module

    drained = webhook_delivery.drain(engine(), settings, endpoint_id)
    dispatch(drained.messages)
    if drained.drained and drained.next_due_in is not None and drained.next_due_in <= SHORT_WAIT_SECONDS:
        deliver_webhooks.send_with_options(args=(endpoint_id,), delay=int(drained.next_due_in * 1000) + 50)


def send_drains(endpoint_ids: list[str]) -> None:
    """The relay's hook: a message per endpoint that received deliveries in its pass."""
    try:
        for endpoint_id in endpoint_ids:
            deliver_webhooks.send(endpoint_id)
    except Exception:  # the deliveries are committed: the scheduler's sweep publishes them instead
        log.warning("Publishing webhook deliveries failed; the scheduler's sweep will", exc_info=True)
