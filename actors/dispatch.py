"""Turns a unit of work's after-commit messages into actor sends."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq

from actors.outbox import relayer
from orchestrator.unit_of_work import Message

RELAY = Message("relay_outbox")


def dispatch(messages: Iterable[Message]) -> None:
    """Send each message to the actor it names (all actors are registered on the one broker).

    The outbox relay is not a message: a publish with confirmation per command cost more than the
    relay itself. The process's relay thread is asked instead, and coalesces the requests.
    """
    broker = dramatiq.get_broker()
    for message in messages:
        if message == RELAY:
            relayer.request()
            continue
        actor = broker.get_actor(message.actor)
        if message.delay_ms:
            actor.send_with_options(args=message.args, delay=message.delay_ms)
        else:
            actor.send(*message.args)
