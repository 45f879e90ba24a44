"""A worker SIGKILLed while it creates a payout: the message is redelivered, the payout exists once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from tests.airtm.helpers import credits_for, funded_user, journal_count, status_of, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance


@pytest.mark.slow
async def test_a_worker_killed_mid_create_makes_no_twin_payout(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "50.00")
    before = Decimal(str(airtm.enterprise()["available"]))
    # one worker, which will die while its payout create hangs at AirTM for 3 s
    airtm_instance.kill_workers()
    airtm_instance.start_worker()
    delay = airtm.sandbox.add_fault(service="airtm", method="POST", path="/payouts", action="delay",
                                    params={"ms": 3000})
    request = asyncio.create_task(airtm_api.post("/withdrawals", {
        "userId": user["id"], "amount": "20.00", "destinationType": "bank", "destinationRef": "bank_ref",
        "commit": True}, headers={"Prefer": "respond-async"}))

    async def in_flight() -> bool:  # this rule's firing: an earlier test's delay in the log is not it
        return any(r["rule"] == delay["id"] for r in airtm.sandbox.fault_log())

    await until(in_flight, "the payout create to reach AirTM")
    airtm_instance.kill_workers()
    airtm_instance.start_worker()  # the replacement gets the unacknowledged message again
    reply = await request
    assert reply.status in (201, 202), reply.body
    withdrawal_id = reply.data["id"] if reply.status == 201 else (await airtm_api.get(
        f"/withdrawals?userId={user['id']}")).data[0]["id"]
    await status_of(airtm_api, f"/withdrawals/{withdrawal_id}", "WITHDRAWAL_COMPLETED", seconds=40)
    assert len(airtm.payouts_with_code(withdrawal_id)) == 1
    assert before - Decimal(str(airtm.enterprise()["available"])) == Decimal("20.00")
    assert (await airtm_api.balance(user["id"]))["available"] == "30.00"
    assert journal_count(airtm_instance.engine, "withdrawal_created", withdrawal_id) == 1
    assert credits_for(airtm_instance.engine, withdrawal_id) == 0
