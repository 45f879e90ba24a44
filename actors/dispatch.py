"""Turns a unit of work's after-commit messages into actor sends."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq

from actors.broker import engine
from actors.outbox import BUSY_RETRY_MS
from orchestrator import relay
from orchestrator.unit_of_work import Message

RELAY = Message("relay_outbox")


def dispatch(messages: Iterable[Message]) -> None:
    """Send each message to the actor it names (all actors are registered on the one broker).

    The outbox relay runs inline instead of as a message: it is one short statement, and a publish
    with confirmation per command cost more than the relay itself. Only when another relay holds
    the lock is a (delayed) relay message sent, so no event waits for the scheduler.
    """
    broker = dramatiq.get_broker()
    for message in messages:
        if message == RELAY:
            try:
                relay.relay(engine())
            except relay.RelayBusy:
                broker.get_actor(RELAY.actor).send_with_options(delay=BUSY_RETRY_MS)
            continue
        broker.get_actor(message.actor).send(*message.args)
