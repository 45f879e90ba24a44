"""Turns a unit of work's after-commit messages into actor sends."""

from __future__ import annotations

from collections.abc import Iterable

import dramatiq

from orchestrator.unit_of_work import Message


def dispatch(messages: Iterable[Message]) -> None:
    """Send each message to the actor it names (all actors are registered on the one broker)."""
    broker = dramatiq.get_broker()
    for message in messages:
        broker.get_actor(message.actor).send(*message.args)
