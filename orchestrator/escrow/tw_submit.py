"""How a signed Trustless Work envelope reaches the network, and how TW's database learns of it
(spec providers.md §1.8, ``TRUSTLESS_SUBMIT_VIA``).

TW's helper reads and some builds (fund compares the escrow it is given with TW's stored copy) come from
TW's own database, which learns of a transaction only through ``/helper/send-transaction`` (T8) or
``PUT /indexer/update-from-txhash`` (TW V1 docs, API REST > Indexer). So:

- ``trustless`` (default): submit through T8; TW's answer is read, but Horizon's record of the hash is
  still what says the envelope landed;
- ``horizon``: submit to Horizon, then register the hash with TW once the ledger shows it.

Whatever TW answers, the never-twice rules of ``chain_steps`` hold: the envelope and its hash were
persisted before this is called, and an unclear answer is settled by looking the hash up.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from stellar_sdk import TransactionEnvelope

from orchestrator.chain_steps import ChainContext, StepNotFinished, failed_op_codes
from orchestrator.db.chain_steps import Step
from orchestrator.errors import OrchestratorError
from orchestrator.escrow import tw_envelopes
from orchestrator.providers.horizon import Submission

log = logging.getLogger(__name__)

#: Marks a ledger record whose transaction TW's helper relayed (TW's database has it already).
RELAYED = "trustlessRelayed"
_TX_CODE = re.compile(r"\b(tx_[a-z_]+)\b")


def submit(ctx: ChainContext, step: Step, signed_xdr: str) -> Submission:
    """Send one signed envelope the configured way; the outcome is Horizon's wherever Horizon knows it."""
    if ctx.settings.trustless_submit_via == "horizon":
        return ctx.horizon.submit(signed_xdr)
    # the step carries the hash it persisted with the envelope; decoding Soroban XDR is costly (issue 16)
    tx_hash = step.tx_hash or _envelope(ctx, signed_xdr).hash_hex()
    try:
        sent = ctx.trustless.send_transaction(signed_xdr)
    except OrchestratorError as error:  # TW did not take it (429, a key or route problem): look it up later
        return Submission("ambiguous", error=f"send-transaction: {error.code}: {error.message}")
    if sent.outcome == "ambiguous":
        return Submission("ambiguous", error=f"send-transaction: {sent.message}")
    record = ctx.horizon.transaction(tx_hash)
    if sent.outcome == "applied":
        _cross_check(ctx, step, signed_xdr, sent.contract_id)
        if record is None:  # TW says done; the ledger is the judge, and it has not shown the hash yet
            return Submission("ambiguous", error="send-transaction answered SUCCESS; Horizon does not show it yet")
    if record is not None:
        if record.get("successful"):
            return Submission("applied", record={**record, RELAYED: sent.outcome == "applied"})
        return Submission("failed", record=record, tx_code="tx_failed", op_codes=failed_op_codes(record),
                          error=sent.message or "failed in ledger")
    # refused and not on the ledger: a transaction-level code TW passed on decides like Horizon's would
    code = _TX_CODE.search(sent.message or "")
    if code is not None:
        return Submission("failed", tx_code=code.group(1), error=sent.message)
    if sent.refusal is not None and sent.refusal.rule is not None:
        return Submission("failed", tx_code="tx_failed", op_codes=["function_trapped"], error=sent.message)
    return Submission("ambiguous", error=f"send-transaction refused: {sent.message}")


def landed(ctx: ChainContext, step: Step, submission: Submission) -> None:
    """The ledger shows the envelope applied: make sure TW's database knows it (unless T8 relayed it)."""
    record: dict[str, Any] = submission.record or {}
    if record.get(RELAYED) or not record.get("hash"):
        return
    try:
        ctx.trustless.register(record["hash"])
    except OrchestratorError as error:
        if getattr(error, "permanent", False):
            # the ledger is the truth and the step landed; a later build that needs TW's copy will say so
            log.error("Trustless Work refused to index transaction %s of step %s: %s", record["hash"], step.id,
                      error.message)
            return
        raise StepNotFinished(f"update-from-txhash: {error.code}: {error.message}") from error


def derive(ctx: ChainContext, envelope: TransactionEnvelope) -> dict[str, Any]:
    """A deploy's contract id, derived offline before submission and stored with the step."""
    return {"contractId": tw_envelopes.deployed_contract_id(envelope, ctx.settings.network_passphrase)}


def _envelope(ctx: ChainContext, signed_xdr: str) -> TransactionEnvelope:
    return TransactionEnvelope.from_xdr(signed_xdr, ctx.settings.network_passphrase)


def _cross_check(ctx: ChainContext, step: Step, signed_xdr: str, answered: str | None) -> None:
    if step.kind != "tw_deploy" or not answered:
        return
    derived = step.params.get("contractId") or tw_envelopes.deployed_contract_id(
        _envelope(ctx, signed_xdr), ctx.settings.network_passphrase)
    if answered != derived:
        log.error("Trustless Work answered contract %s for step %s, but the envelope deploys %s; keeping the "
                  "derived id (the network's rule).", answered, step.id, derived)
