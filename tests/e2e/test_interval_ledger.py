"""`SANDBOX_LEDGER_MODE=interval`: ledgers close on a timer, as on the real network, and every submission
waits for the next close. A release and a refund run side by side through the API from escrow to close
and come out right: each transaction in its own later ledger, the request waiting across several closes
(200) or answering 202 and finishing in the background, book and ledger equal to the stroop.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_escrow_faults import contract_balance, events, transaction
from tests.e2e.test_escrow_flow import funded_buyer, usdc
from tests.e2e.test_fault_matrix import finished
from tests.fixtures.sandbox import SandboxControl

pytestmark = pytest.mark.usefixtures("monitor")
WAIT = {"Prefer": "wait=30"}
INTERVAL = 0.8


def ledgers_of(engine: Engine, ledger: SandboxControl, order_id: str) -> list[tuple[str, int]]:
    """Each confirmed ledger step of the order with the ledger it landed in, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, tx_hash FROM chain_steps WHERE params->>'orderId' = :o "
                                 "AND status = 'CONFIRMED' AND tx_hash IS NOT NULL ORDER BY created_at, id"),
                            {"o": order_id}).all()
    return [(kind, int(transaction(ledger, tx_hash)["ledger"])) for kind, tx_hash in rows]


async def lifecycle(api: Api, engine: Engine, ledger: SandboxControl, buyer: dict[str, Any],
                    seller: dict[str, Any], ending: str) -> dict[str, Any]:
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "40.00",
                                        "title": f"Interval {ending}"})).data
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    created = await api.post(f"/orders/{order['id']}/escrow", headers=WAIT)
    assert created.status == 200, created.body
    assert created.data["escrow"]["status"] == "CREATED"
    funded = await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT)
    assert funded.status == 200, funded.body
    assert funded.data["status"] == "IN_PROGRESS"
    if ending == "release":  # three transactions, several closes: the request waits for all of them
        reply = await api.post(f"/orders/{order['id']}/resolution/release", headers=WAIT)
        assert reply.status == 200, reply.body
        return reply.data
    reply = await api.post(f"/orders/{order['id']}/resolution/refund", {"reason": "interval"},
                           headers={"Prefer": "respond-async"})
    assert reply.status == 202, reply.body
    await finished(api, engine, reply)  # the command and the ledger flow it started
    return (await api.get(f"/orders/{order['id']}")).data


async def test_a_release_and_a_refund_come_out_right_when_ledgers_close_on_a_timer(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    (buyer_a, wallet_a), (buyer_b, wallet_b), (seller, seller_wallet) = await asyncio.gather(
        funded_buyer(api, engine, ledger, "40.00"), funded_buyer(api, engine, ledger, "100.00"),
        active_wallet(api, engine))
    ledger.set_ledger_mode("interval", INTERVAL)
    try:
        released, refunded = await asyncio.gather(lifecycle(api, engine, ledger, buyer_a, seller, "release"),
                                                  lifecycle(api, engine, ledger, buyer_b, seller, "refund"))
    finally:
        ledger.set_ledger_mode("instant")
    assert (released["status"], released["finalStatus"]) == ("CLOSED", "RELEASED")
    assert (refunded["status"], refunded["finalStatus"]) == ("CLOSED", "REFUNDED")
    # one transaction per step, each in a later ledger than the one before (each waited for its close)
    for order, kinds in ((released, ["tw_deploy", "tw_fund", "tw_change_status", "tw_approve", "tw_release"]),
                         (refunded, ["tw_deploy", "tw_fund", "tw_dispute", "tw_resolve"])):
        landed = ledgers_of(engine, ledger, order["id"])
        assert [kind for kind, _ in landed] == kinds
        sequence = [number for _, number in landed]
        assert sequence == sorted(set(sequence))
        assert contract_balance(ledger, order["escrow"]["trustlessContractId"]) == 0
        assert len(events(engine, order["id"], "order.closed")) == 1
    # the seller got 40.00 less TW's 0.3 % once; buyer B got the same back; book equal to ledger
    assert usdc(ledger, seller_wallet["public_key"]) == Decimal("39.88")
    assert (await api.balance(seller["id"]))["available"] == "39.88"
    assert usdc(ledger, wallet_a["public_key"]) == 0
    assert (await api.balance(buyer_a["id"]))["available"] == "0.00"
    assert usdc(ledger, wallet_b["public_key"]) == Decimal("99.88")
    assert (await api.balance(buyer_b["id"]))["available"] == "99.88"
