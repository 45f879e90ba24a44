"""Executes recorded commands; the message carries only the command id."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.middleware import CurrentMessage

from actors.broker import COMMANDS, engine, settings
from actors.dispatch import dispatch
from actors.metrics import metrics
from orchestrator import commands

log = logging.getLogger(__name__)


@dramatiq.actor(queue_name=COMMANDS, max_retries=10, min_backoff=100, max_backoff=30_000)
def execute_command(command_id: str) -> None:
    """Run the command once; a redelivery of a finished command does nothing."""
    message = CurrentMessage.get_current_message()
    first = (message is not None and not getattr(message, "redelivered", True)
             and not message.options.get("retries"))
    outcome = commands.execute(engine(), command_id, settings, first_delivery=first)
    log.info("Command %s", outcome.status.lower())
    metrics.command_finished(outcome.kind, outcome.status, outcome.age_seconds)
    dispatch(outcome.messages)
