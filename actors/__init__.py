"""Dramatiq entrypoints: ``dramatiq actors`` imports this package and so registers every actor."""

from actors import broker
from actors.airtm import airtm_create_payin, airtm_create_payout, airtm_refresh, process_airtm_webhook
from actors.chain import run_chain_step
from actors.commands import execute_command
from actors.deposits import credit_deposits
from actors.outbox import relay_outbox
from actors.webhooks import deliver_webhooks

__all__ = ["airtm_create_payin", "airtm_create_payout", "airtm_refresh", "broker", "credit_deposits",
           "deliver_webhooks", "execute_command", "process_airtm_webhook", "relay_outbox", "run_chain_step"]
