"""AirTM's reason codes as its own API description gives them (DESIGN decision 24), end to end.

Source: AirTM Enterprise API v2 description 1.87.0, "Reason Codes" (OFFER-HUB/offer-hub,
docs/airtm/documentation.json): 415008 "Recipient address not active - Retry later", 415009
"Recipient address inactive", 415010 "User deleted or banned", 415061 "Recipient from restricted
territory", 415065 "User has violated the AML policy", 415005 "Payout not found".
"""

from __future__ import annotations

from typing import Any

from tests.airtm.helpers import credits_for, funded_user, status_of, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance

#: The refusals that end a withdrawal at once, and the ``failureReason`` each one means.
FINAL = [("415009", "USER_INACTIVE"), ("415010", "USER_BANNED"), ("415061", "RESTRICTED_TERRITORY"),
         ("415065", "AML_REJECTED")]


def body(user_id: str, email: str, amount: str = "10.00") -> dict[str, Any]:
    return {"userId": user_id, "amount": amount, "destinationType": "airtm_balance", "destinationRef": email}


async def test_each_final_refusal_fails_the_withdrawal_with_the_reason_airtm_gives(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await funded_user(airtm_api, airtm, "30.00")
    for code, reason in FINAL:
        airtm.user(email=email, payoutRejectCode=code)
        reply = await airtm_api.post("/withdrawals", body(user["id"], email))
        assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_INVALID"), (code, reply.body)
        assert (reply.error["details"]["failureReason"], reply.error["details"]["reasonCode"]) == (reason, code)
        withdrawal_id = reply.error["details"]["withdrawalId"]
        failed = (await airtm_api.get(f"/withdrawals/{withdrawal_id}")).data
        assert (failed["status"], failed["airtmPayoutId"]) == ("WITHDRAWAL_FAILED", None)
        assert credits_for(airtm_instance.engine, withdrawal_id) == 1
        assert (await airtm_api.balance(user["id"]))["available"] == "30.00"


async def test_retry_later_keeps_the_withdrawal_open_and_the_payout_is_made_once_airtm_accepts(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await funded_user(airtm_api, airtm, "40.00")
    airtm.user(email=email, payoutRejectCode="415008")  # "Recipient address not active - Retry later"

    reply = await airtm_api.post("/withdrawals", body(user["id"], email, "15.00"))

    assert (reply.status, reply.error["code"]) == (502, "PROVIDER_ERROR"), reply.body  # retryable, never final
    details = reply.error["details"]
    assert (details["reasonCode"], details["pending"]) == ("415008", True)
    withdrawal_id = details["withdrawalId"]
    held = (await airtm_api.get(f"/withdrawals/{withdrawal_id}")).data
    assert (held["status"], held["airtmPayoutId"]) == ("WITHDRAWAL_CREATED", None)
    assert (await airtm_api.balance(user["id"]))["available"] == "25.00"
    assert credits_for(airtm_instance.engine, withdrawal_id) == 0

    airtm.user(email=email)  # later, AirTM takes payouts to this recipient again

    async def created() -> Any:
        found = (await airtm_api.get(f"/withdrawals/{withdrawal_id}")).data
        return found if found["airtmPayoutId"] else None

    made = await until(created, "the payout to be made on a later attempt", seconds=40)
    assert made["status"] == "WITHDRAWAL_CREATED"
    assert len(airtm.payouts_with_code(withdrawal_id)) == 1
    committed = await airtm_api.post(f"/withdrawals/{withdrawal_id}/commit")
    assert committed.status == 200, committed.body
    await status_of(airtm_api, f"/withdrawals/{withdrawal_id}", "WITHDRAWAL_COMPLETED")
    assert (await airtm_api.balance(user["id"]))["available"] == "25.00"
    assert credits_for(airtm_instance.engine, withdrawal_id) == 0


async def test_payout_not_found_415005_is_not_found_whatever_http_status_comes_with_it(
        airtm_api: Api, airtm: AirtmControl) -> None:
    """A create whose answer is unclear is looked up by code; AirTM's 415005 there means "not made",
    so the payout is created again instead of the withdrawal failing (the status is AirTM's to pick:
    its description gives none per reason code)."""
    user, email = await funded_user(airtm_api, airtm, "20.00")
    airtm.sandbox.add_fault(service="airtm", method="POST", path="/payouts", action="status",
                            params={"status": 503})
    airtm.sandbox.add_fault(service="airtm", method="GET", path="/payouts/by-code/*", action="status",
                            params={"status": 400, "code": "415005", "message": "Payout not found"})

    reply = await airtm_api.post("/withdrawals", body(user["id"], email, "10.00"))

    assert reply.status == 201, reply.body
    assert [r["action"] for r in airtm.sandbox.fault_log()][-2:] == ["status", "status"]
    [payout] = airtm.payouts_with_code(reply.data["id"])
    assert (reply.data["status"], reply.data["airtmPayoutId"]) == ("WITHDRAWAL_CREATED", payout["id"])

    airtm.sandbox.add_fault(service="airtm", method="GET", path="/payouts/*", action="status",
                            params={"status": 400, "code": "415005", "message": "Payout not found"})
    refreshed = await airtm_api.post(f"/withdrawals/{reply.data['id']}/refresh")
    assert (refreshed.status, refreshed.data["status"]) == (200, "WITHDRAWAL_CREATED")
