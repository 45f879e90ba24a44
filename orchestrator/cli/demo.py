"""``offerhub demo``: the seed flows against a running system on the sandbox, narrated as they happen.

Two users are created; the buyer is funded by a real USDC payment on the sandbox ledger into its wallet (the
deposit monitor credits it); then one order is released, one refunded and one disputed and split. Events
stream in beside the steps (the SDK's ``events.stream``), and the run ends with each party's book balance
beside the USDC its wallet holds on the sandbox ledger. ``--provider airtm`` runs the same story on an
AirTM-mode instance (``orchestrator/cli/demo_airtm.py``); the instance's ``/config`` must name the same provider,
since each mode's money-in flow is refused by the other.
"""

from __future__ import annotations

import argparse

from orchestrator.cli.demo_airtm import AirtmDemo
from orchestrator.cli.demo_crypto import Demo
from orchestrator.cli.narration import http_json, sandbox_url
from orchestrator.client import Client


def run(client: Client, args: argparse.Namespace) -> int:
    sandbox = sandbox_url(args)
    try:
        http_json("GET", f"{sandbox}/_sandbox/state")
    except OSError as error:
        raise SystemExit(f"Error: the sandbox's control plane at {sandbox} does not answer ({error}). The demo "
                         "runs against the local sandbox: start the system with scripts/dev.") from None
    client.system.health()
    wanted = getattr(args, "provider", None) or "crypto"
    running = (client.system.config().get("providers") or {}).get("payment")
    if running != wanted:
        raise SystemExit(
            f"Error: the instance at {client.config.api_url} runs PAYMENT_PROVIDER={running}, and "
            f"`offerhub demo --provider {wanted}` needs one in {wanted} mode (each mode refuses the other's "
            f"money-in flow). Run `offerhub demo --provider {running}`, or set PAYMENT_PROVIDER={wanted} in the "
            "instance's .env and restart it.")
    if wanted == "airtm":
        return AirtmDemo(client, sandbox).run(args)
    return Demo(client, sandbox).run(args)


