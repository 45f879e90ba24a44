"""The scheduler process: one active leader (advisory lock) running the periodic sweeps."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from actors.broker import engine, settings
from actors.chain import run_chain_step
from actors.commands import execute_command
from actors.deposits import send_credits
from orchestrator import relay, sweeps
from orchestrator.db import leader

log = logging.getLogger(__name__)
RELAY_SECONDS = 1.0
PRUNE_SECONDS = 3600.0


def run(stop: Callable[[], bool] = lambda: False) -> None:
    """Wait to lead, then loop; a standby takes over when the leader's connection drops."""
    while not stop():
        holder = leader.try_lead(engine(), leader.SCHEDULER_LOCK)
        if holder is None:
            time.sleep(2)
            continue
        log.info("Scheduler is the leader")
        try:
            _lead(holder, stop)
        finally:
            holder.close()


def _sweep() -> None:
    age = settings.command_sweep_seconds
    for command_id in sweeps.stale_commands(engine(), older_than_seconds=age):
        log.warning("Republishing command %s (no result yet)", command_id)
        execute_command.send(command_id)
    stale = sweeps.stale_deposits(engine(), older_than_seconds=age)
    if stale:
        log.warning("Republishing the credit of %d deposit(s)", len(stale))
        send_credits(stale)
    for step_id in sweeps.stalled_steps(engine(), older_than_seconds=max(age, settings.chain_stall_seconds)):
        log.warning("Driving on stalled chain step %s", step_id)
        run_chain_step.send(step_id)


def _lead(holder: object, stop: Callable[[], bool]) -> None:
    next_sweep = next_prune = 0.0
    while not stop() and leader.still_leading(holder):  # type: ignore[arg-type]
        now = time.monotonic()
        try:
            relay.relay(engine())
            if now >= next_sweep:
                _sweep()
                next_sweep = now + settings.command_sweep_seconds / 2
            if now >= next_prune:
                log.info("Pruned %s", sweeps.prune(engine(), event_retention_days=settings.event_retention_days))
                next_prune = now + PRUNE_SECONDS
        except Exception:
            log.exception("A scheduler pass failed; retrying")
        time.sleep(RELAY_SECONDS)
