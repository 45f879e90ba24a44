"""Turns a unit of work's after-commit messages into actor sends."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq

from actors.broker import engine
from orchestrator import relay
from orchestrator.unit_of_work import Message

RELAY = Message("relay_outbox")


def dispatch(messages: Iterable[Message]) -> None:
    """Send each message to the actor it names (all actors are registered on the one broker).

    The outbox relay runs inline instead of as a message: it is one short statement, and a publish
    with confirmation per command cost more than the relay itself.
    """
    broker = dramatiq.get_broker()
    for message in messages:
        if message == RELAY:
            relay.relay(engine())
            continue
        broker.get_actor(message.actor).send(*message.args)
