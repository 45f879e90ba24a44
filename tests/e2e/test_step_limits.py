"""A step past its attempt limit is failed only once nothing of it can be on the ledger.

A withdrawal's payment lands while Horizon holds the answer (`apply_then_drop` with `ms`); meanwhile the
step's row shows it has already been tried more often than `MAX_ATTEMPTS` allows (a long outage; the
count is written into the row, as such an outage would have left it). Failing the step now would
restore the balance of a payment that left the wallet: paid twice. The engine looks the signed
envelope up first, finds it applied and completes the withdrawal once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from orchestrator.chain_steps import MAX_ATTEMPTS
from tests.api import Api
from tests.e2e.test_escrow_faults import events, wait_until
from tests.e2e.test_escrow_flow import funded_buyer, usdc
from tests.e2e.test_fault_matrix import finished
from tests.fixtures.sandbox import SandboxControl

pytestmark = pytest.mark.usefixtures("monitor")
SUBMIT = {"service": "horizon", "method": "POST", "path": "/transactions"}


def payment_step(engine: Engine, withdrawal_id: str) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, status, tx_hash, attempts FROM chain_steps WHERE subject_id = :w"),
                                 {"w": withdrawal_id}).mappings().one())


async def test_a_payment_past_its_attempt_limit_that_landed_is_completed_not_failed_and_restored(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user, wallet = await funded_buyer(api, engine, ledger, "30.00")
    outside = ledger.create_account()
    held = ledger.add_fault(**SUBMIT, when={"source": wallet["public_key"], "operation": "payment"},
                            action="apply_then_drop", params={"ms": 1500}, times=1)["id"]
    try:
        reply = await api.post("/withdrawals", {"userId": user["id"], "amount": "20.00", "destinationType": "crypto",
                                                "destinationRef": outside["publicKey"]},
                               headers={"Prefer": "respond-async"})
        assert reply.status == 202, reply.body
        await wait_until(lambda: any(e["rule"] == held for e in ledger.fault_log()), what="the held submission")
        with engine.connect() as conn:
            withdrawal_id = conn.execute(text("SELECT id FROM withdrawals WHERE user_id = :u"),
                                         {"u": user["id"]}).scalar_one()
        step = payment_step(engine, withdrawal_id)
        assert step["status"] == "SIGNED"
        assert usdc(ledger, outside["publicKey"]) == Decimal("20")  # applied; the answer is still held
        with engine.begin() as conn:  # the row as a long outage would have left it
            conn.execute(text("UPDATE chain_steps SET attempts = :n WHERE id = :s"),
                         {"n": MAX_ATTEMPTS + 5, "s": step["id"]})
        done = await finished(api, engine, reply)
    finally:
        ledger.clear_faults()
    assert done["flow_status"] == "DONE", done
    landed = payment_step(engine, withdrawal_id)
    assert (landed["status"], landed["tx_hash"]) == ("CONFIRMED", step["tx_hash"])
    withdrawal = (await api.get(f"/withdrawals/{withdrawal_id}")).data
    assert withdrawal["status"] == "WITHDRAWAL_COMPLETED"
    assert events(engine, withdrawal_id, "withdrawal.failed") == []
    # paid once, debited once: the book agrees with the wallet
    assert usdc(ledger, outside["publicKey"]) == Decimal("20")
    assert usdc(ledger, wallet["public_key"]) == Decimal("10")
    assert (await api.balance(user["id"]))["available"] == "10.00"
