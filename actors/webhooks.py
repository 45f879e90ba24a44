"""Delivers outbound webhooks on a queue of their own (``webhooks``, its own Procfile role), so operators
size delivery apart from commands and a slow receiver never holds up money movement."""

from __future__ import annotations

import atexit
import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from actors.broker import WEBHOOKS, engine, settings
from orchestrator.outbox import webhook_delivery

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


#: Publishes the drain messages without publisher confirms. A confirmed send waits a round trip with
#: RabbitMQ, and the relay sends one per endpoint in a row: the tenth endpoint's message left 6-13 ms after
#: the first on a loaded machine, 0.4 ms without confirms. Nothing is lost by not waiting: the deliveries
#: are committed before the message is sent, and the scheduler's sweep publishes a drain for every endpoint
#: with a due delivery (every COMMAND_SWEEP_SECONDS / 2), so a message RabbitMQ never took delays its
#: deliveries by a few seconds and loses none. Consumption stays on the process's broker (its middleware).
publisher = RabbitmqBroker(url=settings.rabbitmq_url, confirm_delivery=False, middleware=[])
atexit.register(publisher.close)


def send_drains(endpoint_ids: list[str]) -> None:
    """The relay's and the sweep's hook: a message per endpoint that received deliveries, published
    without waiting for RabbitMQ's confirmations (see ``publisher``)."""
    try:
        for endpoint_id in endpoint_ids:
            publisher.enqueue(deliver_webhooks.message(endpoint_id))
    except Exception:  # the deliveries are committed: the scheduler's sweep publishes them instead
        log.warning("Publishing webhook deliveries failed; the scheduler's sweep will", exc_info=True)
