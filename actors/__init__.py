"""Dramatiq entrypoints: ``dramatiq actors`` imports this package and so registers every actor."""

from actors import broker
from actors.chain import run_chain_step
from actors.commands import execute_command
from actors.deposits import credit_deposits
from actors.outbox import relay_outbox

__all__ = ["broker", "credit_deposits", "execute_command", "relay_outbox", "run_chain_step"]
