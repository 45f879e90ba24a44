"""AirTM mode end to end: linking an account, top-ups paid on AirTM's page and credited once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.airtm.helpers import credits_for, events_of, journal_count, linked_user, status_of
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance


async def test_linking_checks_the_account_at_airtm_and_stores_it_once(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    email = airtm.user()
    user = await airtm_api.user()
    reply = await airtm_api.post(f"/users/{user['id']}/airtm/link", {"email": email})
    assert reply.status == 200, reply.body
    assert (reply.data["userId"], reply.data["eligible"], reply.data["email"]) == (user["id"], True, email)
    assert reply.data["airtmUserId"]
    assert reply.data["airtmLinkedAt"]
    airtm.user(email=email, status="inactive")  # an existing link is returned as it is, without asking AirTM
    again = await airtm_api.post(f"/users/{user['id']}/airtm/link", {"email": email.upper()})
    assert (again.status, again.data["airtmUserId"]) == (200, reply.data["airtmUserId"])
    other = await airtm_api.post(f"/users/{user['id']}/airtm/link", {"email": airtm.user()})
    assert (other.status, other.error["code"]) == (409, "AIRTM_USER_ALREADY_LINKED")
    assert events_of(airtm_instance.engine, user["id"]).count("user.airtm_linked") == 1
    shown = await airtm_api.get(f"/users/{user['id']}")
    assert (shown.data["airtmLinked"], shown.data["airtmUserId"]) == (True, reply.data["airtmUserId"])


@pytest.mark.parametrize(("seed", "reason"), [
    (None, "USER_NOT_FOUND"), ({"status": "inactive"}, "USER_INACTIVE"), ({"isVerified": False}, "USER_NOT_VERIFIED")])
async def test_an_ineligible_airtm_account_is_refused_with_its_reason(
        airtm_api: Api, airtm: AirtmControl, seed: dict[str, object] | None, reason: str) -> None:
    email = "nobody-at-airtm@example.com" if seed is None else airtm.user(**seed)
    user = await airtm_api.user()
    reply = await airtm_api.post(f"/users/{user['id']}/airtm/link", {"email": email})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_INVALID")
    assert reply.error["details"]["failureReason"] == reason


async def test_a_topup_confirmed_on_airtm_credits_the_balance_once(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await linked_user(airtm_api, airtm)
    before = Decimal(str(airtm.enterprise()["available"]))
    reply = await airtm_api.post("/topups", {"userId": user["id"], "amount": "25.50",
                                             "returnUrl": "https://shop.example/ok",
                                             "cancelUrl": "https://shop.example/no"})
    assert reply.status == 201, reply.body
    topup = reply.data
    assert topup["status"] == "TOPUP_AWAITING_USER_CONFIRMATION"
    assert topup["confirmationUri"] == topup["confirmation_uri"]
    assert topup["confirmationUri"].endswith(f"/airtm/checkout/payin/{topup['airtmPayinId']}")
    [payin] = airtm.payins_with_code(topup["id"])
    assert (payin["id"], payin["amount"]) == (topup["airtmPayinId"], 25.5)
    assert payin["confirmationUri"].endswith(f"/api/v1/topups/{topup['id']}/callback")

    airtm.payin(topup["airtmPayinId"], "confirm", email=email)
    done = await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_SUCCEEDED")
    assert done["airtmPayinId"] == topup["airtmPayinId"]
    assert (await airtm_api.balance(user["id"]))["available"] == "25.50"
    assert Decimal(str(airtm.enterprise()["available"])) - before == Decimal("25.50")
    assert credits_for(airtm_instance.engine, topup["id"]) == 1
    assert journal_count(airtm_instance.engine, "topup", topup["id"]) == 1
    assert events_of(airtm_instance.engine, topup["id"]) == ["topup.created", "topup.confirmation_required",
                                                            "topup.succeeded"]
    # the browser comes back through the callback: 302 to returnUrl, nothing changes
    back = await airtm_api.get(f"/topups/{topup['id']}/callback?code={topup['id']}", allow_redirects=False)
    assert (back.status, back.headers["Location"]) == (302, "https://shop.example/ok")
    refreshed = await airtm_api.post(f"/topups/{topup['id']}/refresh")
    assert refreshed.data["status"] == "TOPUP_SUCCEEDED"
    listed = await airtm_api.get(f"/topups?userId={user['id']}")
    assert [t["id"] for t in listed.data] == [topup["id"]]
    assert credits_for(airtm_instance.engine, topup["id"]) == 1


async def test_a_topup_canceled_by_the_marketplace_is_canceled_at_airtm_and_credits_nothing(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    topup = (await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})).data
    assert topup["returnUrl"] == "https://marketplace.example/topup/done"
    canceled = await airtm_api.post(f"/topups/{topup['id']}/cancel")
    assert (canceled.status, canceled.data["status"]) == (200, "TOPUP_CANCELED")
    assert airtm.payins_with_code(topup["id"])[0]["status"] == "CANCELED"
    again = await airtm_api.post(f"/topups/{topup['id']}/cancel")
    assert (again.status, again.error["code"]) == (409, "INVALID_STATE_TRANSITION")
    back = await airtm_api.get(f"/topups/{topup['id']}/callback", allow_redirects=False)
    assert (back.status, back.headers["Location"]) == (302, "https://marketplace.example/topup/canceled")
    assert (await airtm_api.balance(user["id"]))["available"] == "0.00"
    assert events_of(airtm_instance.engine, topup["id"])[-1] == "topup.canceled"


async def test_a_topup_failed_or_canceled_by_the_buyer_at_airtm_credits_nothing(
        airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    failing = (await airtm_api.post("/topups", {"userId": user["id"], "amount": "12.00"})).data
    leaving = (await airtm_api.post("/topups", {"userId": user["id"], "amount": "13.00"})).data
    airtm.payin(failing["airtmPayinId"], "fail", reason="card declined")
    airtm.payin(leaving["airtmPayinId"], "cancel")
    failed = await status_of(airtm_api, f"/topups/{failing['id']}", "TOPUP_FAILED")
    assert "card declined" in failed["failureReason"]
    await status_of(airtm_api, f"/topups/{leaving['id']}", "TOPUP_CANCELED")
    assert (await airtm_api.balance(user["id"]))["available"] == "0.00"


async def test_topups_need_a_linked_user_and_airtm_mode(airtm_api: Api, api: Api) -> None:
    unlinked = await airtm_api.user()
    reply = await airtm_api.post("/topups", {"userId": unlinked["id"], "amount": "10.00"})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_NOT_LINKED")
    bad = await airtm_api.post("/topups", {"user_id": unlinked["id"], "amount": "0.50",
                                           "return_url": "http://shop.example/ok", "cancelUrl": "ftp://x"})
    assert bad.status == 400, bad.body
    assert sorted(f["field"] for f in bad.error["details"]["fields"]) == ["cancelUrl", "returnUrl"]
    small = await airtm_api.post("/topups", {"userId": unlinked["id"], "amount": "0.50"})
    assert small.error["details"]["fields"][0]["code"] == "AMOUNT_OUT_OF_RANGE"
    missing = await airtm_api.get("/topups/topup_doesnotexist")
    assert (missing.status, missing.error["code"]) == (404, "TOPUP_NOT_FOUND")
    crypto_user = await api.user()
    crypto = await api.post("/topups", {"userId": crypto_user["id"], "amount": "10.00"})
    assert (crypto.status, crypto.error["code"]) == (422, "PROVIDER_NOT_ENABLED")
    link = await api.post(f"/users/{crypto_user['id']}/airtm/link", {"email": "x@example.com"})
    assert (link.status, link.error["code"]) == (422, "PROVIDER_NOT_ENABLED")


async def test_an_order_of_an_unlinked_airtm_backed_user_is_refused(airtm_api: Api) -> None:
    """Decision 26 superseded decision 5: escrow works in AirTM mode, but an AIRTM-backed party's claim lives at
    AirTM, so an unlinked one (who could never be paid out) is refused as the spec says."""
    buyer, seller = await airtm_api.user(), await airtm_api.user()
    reply = await airtm_api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                             "title": "Logo"})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_NOT_LINKED"), reply.body
    assert reply.error["details"]["field"] == "buyerId"


async def test_a_cancel_airtm_does_not_confirm_answers_502_and_keeps_the_topup(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await linked_user(airtm_api, airtm)
    topup = (await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})).data
    airtm.sandbox.add_fault(service="airtm", method="DELETE", path="/payins/*", action="status",
                            params={"status": 500})
    refused = await airtm_api.post(f"/topups/{topup['id']}/cancel")
    assert (refused.status, refused.error["code"]) == (502, "PROVIDER_ERROR")  # DESIGN decision 3
    assert (await airtm_api.get(f"/topups/{topup['id']}")).data["status"] == "TOPUP_AWAITING_USER_CONFIRMATION"
    assert airtm.payins_with_code(topup["id"])[0]["status"] == "CREATED"
    airtm.payin(topup["airtmPayinId"], "confirm", email=email)  # the buyer still pays: it is credited
    await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_SUCCEEDED")
    assert credits_for(airtm_instance.engine, topup["id"]) == 1


async def test_an_airtm_error_before_the_create_applies_is_retried_into_one_payin(
        airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    airtm.sandbox.add_fault(service="airtm", method="POST", path="/payins", action="status", params={"status": 503})
    reply = await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})
    assert (reply.status, reply.data["status"]) == (201, "TOPUP_AWAITING_USER_CONFIRMATION")
    assert [r["action"] for r in airtm.sandbox.fault_log()][-1] == "status"
    assert len(airtm.payins_with_code(reply.data["id"])) == 1


async def test_while_airtm_keeps_failing_the_request_gets_502_and_the_topup_is_created_once_later(
        airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    airtm.sandbox.add_fault(service="airtm", method="POST", path="/payins", action="status",
                            params={"status": 503}, times=50)
    reply = await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})
    assert (reply.status, reply.error["code"]) == (502, "PROVIDER_ERROR"), reply.body
    topup_id = reply.error["details"]["topupId"]
    assert (await airtm_api.get(f"/topups/{topup_id}")).data["status"] == "TOPUP_CREATED"  # not failed on a guess
    airtm.sandbox.clear_faults()
    settled = await status_of(airtm_api, f"/topups/{topup_id}", "TOPUP_AWAITING_USER_CONFIRMATION", seconds=40)
    assert len(airtm.payins_with_code(topup_id)) == 1
    assert settled["airtmPayinId"] == airtm.payins_with_code(topup_id)[0]["id"]
