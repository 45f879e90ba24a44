"""A `chain` worker SIGKILLed at the two dangerous points of a payment, then restarted: paid once.

The worker is a real `dramatiq actors` process on a queue prefix of its own (the in-process worker never
sees its messages). The sandbox pauses it at the exact point, with nothing in our code to help:

- **between sign and submit**: the signed envelope and its hash are committed, and the submission is
  held and then dropped unapplied (`timeout`): the ledger never saw it, as if the worker had
  died just before sending. After the restart the hash is not in history and the time bounds are
  open, so the *same* envelope is sent again and lands once.
- **between submit and confirm**: the network applied the envelope and the answer is held
  (`apply_then_drop` with a long `ms`): the money moved while nobody was listening. After the restart
  the hash is found in history and the step is confirmed without sending anything again.

Each is run on the two steps that pay someone: a release's `release_funds` (the seller), held where its
envelope goes under ``TRUSTLESS_SUBMIT_VIA`` (TW's T8 relay or Horizon's submit), and a crypto withdrawal's
payment (an outside account), held by Horizon.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, text

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import commands as commands_db
from orchestrator.settings import Settings
from tests.api import Api
from tests.e2e.test_escrow_faults import contract_balance, transaction, wait_until
from tests.e2e.test_escrow_flow import funded_buyer, in_progress_order, usdc
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues
from tests.fixtures.sandbox import HORIZON_SUBMISSIONS, SandboxControl, submitted_hash, tw_submissions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("monitor")]
#: How the sandbox holds the submission while the worker is killed (long enough to kill it in).
PAUSES = {"sign_submit": ("timeout", {"ms": 4000}), "submit_confirm": ("apply_then_drop", {"ms": 4000})}


@pytest.fixture
def chain_prefix(settings: Settings) -> Iterator[str]:
    prefix = f"{settings.queue_prefix}kill_"
    yield prefix
    delete_queues(settings, prefix)


def command(engine: Engine, kind: str, payload: dict[str, Any]) -> str:
    command_id = ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(commands_db.insert(id=command_id, kind=kind, payload=payload, actor_type="MASTER",
                                        actor_id="master", request_id="chain-kills", idempotency_key=None))
    return command_id


def flow_status(engine: Engine, command_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT flow_status FROM commands WHERE id = :c"), {"c": command_id}).scalar()


def step_rows(engine: Engine, kind: str, subject_ids: list[str]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT id, status, tx_hash, attempts FROM chain_steps WHERE kind = :k AND subject_id = ANY(:s) "
            "ORDER BY created_at"), {"k": kind, "s": subject_ids}).mappings()]


async def killed_and_restarted(engine: Engine, ledger: SandboxControl, broker: dramatiq.Broker, prefix: str,
                               command_id: str, pause: str, submit: dict[str, str], when: dict[str, Any],
                               kind: str, subjects: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the command in a worker, kill it while the target submission is held at ``submit``, restart it;
    returns the signed step row at the kill and the submissions ``submit`` saw after the held one."""
    action, params = PAUSES[pause]
    worker = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "2",
              "--queues", f"{prefix}commands", f"{prefix}chain")
    held = ledger.add_fault(**submit, when=when, action=action, params=params, times=1)["id"]
    after = ledger.add_fault(**submit, when=when, action="delay", params={"ms": 0}, times=0)["id"]
    try:
        with processes.process(*worker, QUEUE_PREFIX=prefix) as first:
            broker.enqueue(dramatiq.Message(queue_name=f"{prefix}commands", actor_name="execute_command",
                                            args=(command_id,), kwargs={}, options={}))
            await wait_until(lambda: any(e["rule"] == held for e in ledger.fault_log()), seconds=60,
                             what="the submission to be held")
            (signed,) = step_rows(engine, kind, subjects())
            # envelope and hash were committed before the submission left
            assert signed["status"] == "SIGNED"
            assert signed["tx_hash"]
            processes.kill(first)
        assert flow_status(engine, command_id) == "RUNNING"
        with processes.process(*worker, QUEUE_PREFIX=prefix):
            await wait_until(lambda: flow_status(engine, command_id) != "RUNNING", seconds=60,
                             what="the flow to finish after the restart")
        later = [e for e in ledger.fault_log() if e["rule"] == after]
    finally:
        ledger.clear_faults()
    assert flow_status(engine, command_id) == "DONE"
    return signed, later


def check_sent(pause: str, signed: dict[str, Any], later: list[dict[str, Any]], landed: dict[str, Any]) -> None:
    assert landed["status"] == "CONFIRMED"
    assert landed["tx_hash"] == signed["tx_hash"]  # the envelope signed before the kill, no other
    if pause == "sign_submit":  # never applied: the same envelope sent once more
        assert [submitted_hash(e) for e in later] == [signed["tx_hash"]]
    else:  # applied while nobody listened: found by its hash, never sent again
        assert later == []


@pytest.mark.parametrize("pause", list(PAUSES))
async def test_a_release_whose_chain_worker_is_killed_mid_payment_pays_the_seller_once_after_restart(
        pause: str, api: Api, engine: Engine, ledger: SandboxControl, broker: dramatiq.Broker,
        chain_prefix: str, settings: Settings) -> None:
    order, buyer, seller, wallets = await in_progress_order(api, engine, ledger, "40.00")
    escrow_id = (await api.get(f"/orders/{order['id']}")).data["escrow"]["id"]
    command_id = command(engine, Kind.RELEASE_ORDER, {"orderId": order["id"]})
    signed, later = await killed_and_restarted(
        engine, ledger, broker, chain_prefix, command_id, pause, tw_submissions(settings),
        {"function": "release_funds", "source": wallets["buyer_public_key"]}, "tw_release", lambda: [escrow_id])
    (landed,) = step_rows(engine, "tw_release", [escrow_id])
    check_sent(pause, signed, later, landed)
    assert transaction(ledger, landed["tx_hash"])["successful"] is True
    closed = (await api.get(f"/orders/{order['id']}")).data
    assert (closed["status"], closed["finalStatus"]) == ("CLOSED", "RELEASED")
    # 40.00 less Trustless Work's 0.3 %, once, on the ledger and in the book
    assert usdc(ledger, wallets["public_key"]) == Decimal("39.88")
    assert (await api.balance(seller["id"]))["available"] == "39.88"
    assert contract_balance(ledger, closed["escrow"]["trustlessContractId"]) == 0
    assert usdc(ledger, wallets["buyer_public_key"]) == 0
    assert (await api.balance(buyer["id"]))["available"] == "0.00"


@pytest.mark.parametrize("pause", list(PAUSES))
async def test_a_withdrawal_whose_chain_worker_is_killed_mid_payment_pays_the_destination_once_after_restart(
        pause: str, api: Api, engine: Engine, ledger: SandboxControl, broker: dramatiq.Broker,
        chain_prefix: str) -> None:
    user, wallet = await funded_buyer(api, engine, ledger, "30.00")
    outside = ledger.create_account()
    command_id = command(engine, Kind.CREATE_WITHDRAWAL, {
        "userId": user["id"], "amount": "20.00", "destinationType": "crypto", "destinationRef": outside["publicKey"]})

    def withdrawals() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(text("SELECT id FROM withdrawals WHERE user_id = :u"), {"u": user["id"]})
                        .scalars())

    signed, later = await killed_and_restarted(
        engine, ledger, broker, chain_prefix, command_id, pause, HORIZON_SUBMISSIONS,
        {"operation": "payment", "source": wallet["public_key"]}, "withdrawal_payment", withdrawals)
    (landed,) = step_rows(engine, "withdrawal_payment", withdrawals())
    check_sent(pause, signed, later, landed)
    (withdrawal_id,) = withdrawals()
    withdrawal = (await api.get(f"/withdrawals/{withdrawal_id}")).data
    assert withdrawal["status"] == "WITHDRAWAL_COMPLETED"
    assert usdc(ledger, outside["publicKey"]) == Decimal("20")
    assert usdc(ledger, wallet["public_key"]) == Decimal("10")
    assert (await api.balance(user["id"]))["available"] == "10.00"
