"""AirTM withdrawals end to end: debited at creation (DESIGN decision 15), two-step commit, cancel,
completion, pending, failure with the amount returned exactly once, and no twin payout after a lost answer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.airtm.helpers import credits_for, events_of, funded_user, journal_count, linked_user, status_of, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance


def enterprise(airtm: AirtmControl) -> Decimal:
    return Decimal(str(airtm.enterprise()["available"]))


async def withdraw(api: Api, user_id: str, amount: str, **extra: Any) -> dict[str, Any]:
    reply = await api.post("/withdrawals", {"userId": user_id, "amount": amount, "destinationType": "bank",
                                            "destinationRef": "bank_ref", **extra})
    assert reply.status == 201, reply.body
    return dict(reply.data)


async def test_a_two_step_withdrawal_is_debited_at_creation_committed_and_completed(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await funded_user(airtm_api, airtm, "100.00")
    before = enterprise(airtm)
    withdrawal = await withdraw(airtm_api, user["id"], "40.00")
    assert (withdrawal["status"], withdrawal["committed"]) == ("WITHDRAWAL_CREATED", False)
    assert (await airtm_api.balance(user["id"]))["available"] == "60.00"
    [payout] = airtm.payouts_with_code(withdrawal["id"])
    assert (payout["id"], payout["status"], payout["airtmUserEmail"], payout["grossAmount"]) == (
        withdrawal["airtmPayoutId"], "CREATED", email, 40.0)
    assert before - enterprise(airtm) == Decimal("40.00")

    committed = await airtm_api.post(f"/withdrawals/{withdrawal['id']}/commit?userId={user['id']}")
    assert committed.status == 200, committed.body
    assert (committed.data["status"], committed.data["committed"]) == ("WITHDRAWAL_COMMITTED", True)
    done = await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_COMPLETED")
    assert done["completedAt"] is not None
    again = await airtm_api.post(f"/withdrawals/{withdrawal['id']}/commit")
    assert (again.status, again.error["code"]) == (409, "WITHDRAWAL_NOT_COMMITTABLE")
    assert again.error["details"]["currentState"] == "WITHDRAWAL_COMPLETED"
    assert (await airtm_api.balance(user["id"]))["available"] == "60.00"
    assert airtm.payouts_with_code(withdrawal["id"])[0]["status"] == "COMPLETED"
    assert before - enterprise(airtm) == Decimal("40.00")
    assert events_of(airtm_instance.engine, withdrawal["id"]) == [
        "withdrawal.created", "withdrawal.committed", "withdrawal.completed"]
    assert journal_count(airtm_instance.engine, "withdrawal_created", withdrawal["id"]) == 1


async def test_commit_true_commits_at_once(airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await funded_user(airtm_api, airtm, "50.00")
    withdrawal = await withdraw(airtm_api, user["id"], "50.00", commit=True)
    assert withdrawal["status"] in ("WITHDRAWAL_COMMITTED", "WITHDRAWAL_COMPLETED")
    assert withdrawal["committed"] is True
    await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_COMPLETED")
    assert (await airtm_api.balance(user["id"]))["available"] == "0.00"


async def test_an_uncommitted_withdrawal_can_be_canceled_and_returns_its_amount_once(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "70.00")
    before = enterprise(airtm)
    withdrawal = await withdraw(airtm_api, user["id"], "25.00")
    canceled = await airtm_api.delete(f"/withdrawals/{withdrawal['id']}")
    assert (canceled.status, canceled.data["status"], canceled.data["committed"]) == (
        200, "WITHDRAWAL_CANCELED", False)
    assert airtm.payouts_with_code(withdrawal["id"])[0]["status"] == "CANCELED"
    assert enterprise(airtm) == before
    again = await airtm_api.delete(f"/withdrawals/{withdrawal['id']}")
    assert (again.status, again.error["code"]) == (409, "INVALID_STATE_TRANSITION")
    assert (await airtm_api.balance(user["id"]))["available"] == "70.00"
    assert credits_for(airtm_instance.engine, withdrawal["id"]) == 1
    assert events_of(airtm_instance.engine, withdrawal["id"])[-1] == "withdrawal.canceled"


async def test_a_payout_that_fails_at_airtm_restores_available_once_with_withdrawal_failed(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "80.00")
    before = enterprise(airtm)
    withdrawal = await withdraw(airtm_api, user["id"], "30.00")
    airtm.call("POST", "/airtm/payout-scripts", json={"outcome": "fail", "code": withdrawal["id"],
                                                        "reasonCode": "415073",
                                                        "reasonDescription": "could not deliver"})
    await airtm_api.post(f"/withdrawals/{withdrawal['id']}/commit")
    failed = await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_FAILED")
    assert "could not deliver" in failed["failureReason"]
    assert (await airtm_api.balance(user["id"]))["available"] == "80.00"
    assert enterprise(airtm) == before
    refreshed = await airtm_api.post(f"/withdrawals/{withdrawal['id']}/refresh")
    assert refreshed.data["status"] == "WITHDRAWAL_FAILED"
    assert credits_for(airtm_instance.engine, withdrawal["id"]) == 1
    assert journal_count(airtm_instance.engine, "withdrawal_failed", withdrawal["id"]) == 1
    assert events_of(airtm_instance.engine, withdrawal["id"])[-1] == "withdrawal.failed"
    assert (await airtm_api.balance(user["id"]))["available"] == "80.00"


async def test_a_recipient_who_must_act_leaves_the_withdrawal_pending_until_airtm_completes_it(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "60.00")
    withdrawal = await withdraw(airtm_api, user["id"], "15.00")
    airtm.call("POST", "/airtm/payout-scripts", json={"outcome": "pending", "code": withdrawal["id"]})
    await airtm_api.post(f"/withdrawals/{withdrawal['id']}/commit")
    # PENDING has no webhook: the refresh (or the scheduler's periodic one) reads it
    await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_PENDING_USER_ACTION", seconds=30)
    airtm.payout(withdrawal["airtmPayoutId"], "complete")
    await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_COMPLETED")
    assert "withdrawal.pending_user_action" in events_of(airtm_instance.engine, withdrawal["id"])
    assert (await airtm_api.balance(user["id"]))["available"] == "45.00"


async def test_a_payout_airtm_refuses_fails_the_withdrawal_and_restores_the_balance(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await funded_user(airtm_api, airtm, "40.00")
    airtm.user(email=email, payoutRejectCode="415060")  # the recipient's payment method is refused
    reply = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "20.00",
                                                  "destinationType": "airtm_balance", "destinationRef": email})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_INVALID")
    [row] = (await airtm_api.get(f"/withdrawals?userId={user['id']}")).data
    assert (row["status"], row["airtmPayoutId"]) == ("WITHDRAWAL_FAILED", None)
    assert (await airtm_api.balance(user["id"]))["available"] == "40.00"
    assert credits_for(airtm_instance.engine, row["id"]) == 1


async def test_a_create_applied_at_airtm_but_not_answered_makes_no_twin_payin_or_payout(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "90.00")
    before = enterprise(airtm)
    airtm.sandbox.add_fault(service="airtm", method="POST", path="/payouts", action="apply_then_drop")
    withdrawal = await withdraw(airtm_api, user["id"], "35.00", commit=True)
    airtm.sandbox.add_fault(service="airtm", method="POST", path="/payins", action="apply_then_drop")
    topup = await airtm_api.post("/topups", {"userId": user["id"], "amount": "11.00"})
    assert topup.status == 201, topup.body
    assert [r["action"] for r in airtm.sandbox.fault_log()][-2:] == ["apply_then_drop", "apply_then_drop"]
    assert len(airtm.payouts_with_code(withdrawal["id"])) == 1
    assert len(airtm.payins_with_code(topup.data["id"])) == 1
    assert topup.data["airtmPayinId"] == airtm.payins_with_code(topup.data["id"])[0]["id"]
    await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_COMPLETED")
    assert before - enterprise(airtm) == Decimal("35.00")
    assert (await airtm_api.balance(user["id"]))["available"] == "55.00"


async def test_airtm_withdrawals_need_a_link_and_funds(airtm_api: Api, airtm: AirtmControl) -> None:
    unlinked = await airtm_api.user()
    reply = await airtm_api.post("/withdrawals", {"userId": unlinked["id"], "amount": "10.00",
                                                  "destinationType": "bank", "destinationRef": "x"})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_NOT_LINKED")
    user, _ = await linked_user(airtm_api, airtm)
    poor = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "10.00",
                                                 "destinationType": "bank", "destinationRef": "x"})
    assert (poor.status, poor.error["code"]) == (422, "INSUFFICIENT_FUNDS")
    crypto = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "10.00",
                                                   "destinationType": "crypto", "destinationRef": "G"})
    assert (crypto.status, crypto.error["code"]) == (422, "PROVIDER_NOT_ENABLED")


async def test_a_payout_in_error_holds_the_money_until_airtm_settles_it(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "30.00")
    withdrawal = await withdraw(airtm_api, user["id"], "10.00")
    airtm.call("POST", "/airtm/payout-scripts", json={"outcome": "error", "code": withdrawal["id"],
                                                        "reasonDescription": "contact support"})
    await airtm_api.post(f"/withdrawals/{withdrawal['id']}/commit")

    async def errored() -> bool:
        return airtm.payouts_with_code(withdrawal["id"])[0]["status"] == "ERROR"

    await until(errored, "the payout to reach ERROR at AirTM")
    held = (await airtm_api.post(f"/withdrawals/{withdrawal['id']}/refresh")).data
    assert held["status"] == "WITHDRAWAL_COMMITTED"  # ERROR moves nothing and returns nothing (§3.6)
    assert "contact support" in held["failureReason"]
    assert (await airtm_api.balance(user["id"]))["available"] == "20.00"
    airtm.payout(withdrawal["airtmPayoutId"], "fail", reasonDescription="given up")
    await status_of(airtm_api, f"/withdrawals/{withdrawal['id']}", "WITHDRAWAL_FAILED")
    assert (await airtm_api.balance(user["id"]))["available"] == "30.00"
    assert credits_for(airtm_instance.engine, withdrawal["id"]) == 1
