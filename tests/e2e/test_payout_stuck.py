"""A payout that keeps failing after one of its transactions landed: retried, reported stuck, driven on.

states.md §2.2: once a ledger step of a flow has applied, the order never rolls back; it stays in its
`*_REQUESTED` state while the remaining steps are retried, with `order.operation_failed` (`retrying:
true`). Here the contract refuses every `release_funds` after the milestone was marked and approved:
the step is retried with backoff (1 s, 2 s, 4 s …), the first failure and the moment it counts as stuck
(`PAYOUT_STUCK_AFTER`) are announced, `offerhub check` lists it for an operator, and the money stays in
the contract. Then the retry's message is lost with the worker that held it; once the contract accepts
again the scheduler finds the step that stopped moving and drives it on: the seller is paid once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, text

from orchestrator.commands import Kind
from orchestrator.operations import check
from orchestrator.settings import Settings
from tests.api import Api
from tests.e2e.test_chain_kills import command, flow_status
from tests.e2e.test_escrow_faults import contract_balance, events, wait_until
from tests.e2e.test_escrow_flow import in_progress_order, usdc
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues
from tests.fixtures.sandbox import SandboxControl, tw_submissions

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("monitor")]
STUCK_AFTER = 3


@pytest.fixture
def chain_prefix(settings: Settings) -> Iterator[str]:
    prefix = f"{settings.queue_prefix}stuck_"
    yield prefix
    delete_queues(settings, prefix)


def release_steps(engine: Engine, order_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT id, kind, status, tx_hash, not_before, params FROM chain_steps "
            "WHERE params->>'orderId' = :o AND kind IN ('tw_change_status', 'tw_approve', 'tw_release', 'tw_settle') "
            "ORDER BY created_at, id"), {"o": order_id}).mappings()]


async def test_a_release_refused_again_and_again_after_its_first_steps_landed_is_retried_reported_stuck_and_driven_on(
        api: Api, engine: Engine, ledger: SandboxControl, broker: dramatiq.Broker, settings: Settings,
        chain_prefix: str) -> None:
    order, buyer, seller, wallets = await in_progress_order(api, engine, ledger, "40.00")
    contract = (await api.get(f"/orders/{order['id']}")).data["escrow"]["trustlessContractId"]
    command_id = command(engine, Kind.RELEASE_ORDER, {"orderId": order["id"]})
    env = {"QUEUE_PREFIX": chain_prefix, "PAYOUT_STUCK_AFTER": str(STUCK_AFTER)}
    worker = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "2",
              "--queues", f"{chain_prefix}commands", f"{chain_prefix}chain")

    def failures() -> list[tuple[str, str, bool, str]]:
        return [(e["operation"], e["status"], e["retrying"], e["reason"])
                for e in events(engine, order["id"], "order.operation_failed")]

    try:
        refusal = ledger.add_fault(**tw_submissions(settings), when={"function": "release_funds"},
                                   action="contract_reject", times=0)
        with processes.process(*worker, **env) as first:
            broker.enqueue(dramatiq.Message(queue_name=f"{chain_prefix}commands", actor_name="execute_command",
                                            args=(command_id,), kwargs={}, options={}))
            await wait_until(lambda: len(failures()) == 2, seconds=60, what="the release to be reported stuck")
            processes.kill(first)  # the next retry's message dies with it (its queue is dropped below)
        refused = [e for e in ledger.fault_log() if e["rule"] == refusal["id"]]
        assert len(refused) == STUCK_AFTER
        ledger.clear_faults()  # the contract accepts release_funds again
    finally:
        ledger.clear_faults()

    # retried, announced twice (first failure, then stuck), never rolled back
    (first_failure, stuck) = failures()
    assert first_failure[:3] == ("release", "RELEASE_REQUESTED", True)
    assert stuck[:3] == ("release", "RELEASE_REQUESTED", True)
    assert stuck[3].startswith(f"stuck after {STUCK_AFTER} failed attempts")
    during = (await api.get(f"/orders/{order['id']}")).data
    assert (during["status"], during["escrow"]["status"]) == ("RELEASE_REQUESTED", "RELEASING")
    assert flow_status(engine, command_id) == "RUNNING"
    # the milestone was marked and approved; the money is still in the contract
    rows = release_steps(engine, order["id"])
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("tw_change_status", "CONFIRMED"), ("tw_approve", "CONFIRMED"),
        *[("tw_release", "FAILED")] * STUCK_AFTER, ("tw_release", "PENDING")]
    retries = [r["params"].get("retries") for r in rows[2:]]
    assert retries == [0, 1, 2, 3]
    assert contract_balance(ledger, contract) == Decimal("40")
    assert usdc(ledger, wallets["public_key"]) == 0
    assert (await api.balance(seller["id"]))["available"] == "0.00"
    # an operator sees it
    report = check.verify(engine, stuck_after=STUCK_AFTER)
    assert [line for line in report.stuck if order["id"] in line], report.stuck
    assert not report.ok

    # the retry's message is lost: a worker alone never runs the waiting step again
    delete_queues(settings, chain_prefix)
    waiting = rows[-1]
    # (the scheduler also drives on whatever else the run's earlier tests left open: more threads)
    busy = tuple("8" if arg == "2" else arg for arg in worker)
    with processes.process(*busy, **env):
        await asyncio.sleep(max(0.0, waiting["not_before"].timestamp() - time.time()) + 1.5)
        assert release_steps(engine, order["id"])[-1]["status"] == "PENDING"
        # the scheduler finds the step that stopped moving and drives it on
        with processes.process("-m", "orchestrator", "scheduler", CHAIN_STALL_SECONDS="1",
                               COMMAND_SWEEP_SECONDS="1", **env):
            await wait_until(lambda: flow_status(engine, command_id) == "DONE", seconds=120,
                             what="the scheduler to drive the release on")

    closed = (await api.get(f"/orders/{order['id']}")).data
    assert (closed["status"], closed["finalStatus"]) == ("CLOSED", "RELEASED")
    rows = release_steps(engine, order["id"])
    assert [(r["kind"], r["status"]) for r in rows][-2:] == [("tw_release", "CONFIRMED"), ("tw_settle", "CONFIRMED")]
    # paid once: 40.00 less Trustless Work's 0.3 %, on the ledger and in the book
    assert usdc(ledger, wallets["public_key"]) == Decimal("39.88")
    assert (await api.balance(seller["id"]))["available"] == "39.88"
    assert contract_balance(ledger, contract) == 0
    assert (await api.balance(buyer["id"]))["available"] == "0.00"
    assert len(events(engine, order["id"], "order.released")) == 1
    assert len(failures()) == 2
    assert not [line for line in check.verify(engine, stuck_after=STUCK_AFTER).stuck if order["id"] in line]
