"""POST /webhooks/airtm: Svix verification, dedupe on svix-id, and faulty delivery that changes nothing.

Every fault run ends exactly as a clean run does: the top-up (or withdrawal) in its final state,
the balance credited once, the book matching the sandbox's records to the cent.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from sqlalchemy import text

from orchestrator.airtm.signatures import sign
from tests.airtm.helpers import credits_for, funded_user, linked_user, status_of, topup_paid, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance


def post_webhook(instance: AirtmInstance, secret: str, body: dict[str, Any], *, message_id: str,
                 timestamp: int | None = None, signature: str | None = None) -> requests.Response:
    raw = json.dumps(body).encode()
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {"svix-id": message_id, "svix-timestamp": str(stamp), "content-type": "application/json",
               "svix-signature": signature or f"v1,{sign(secret, message_id, stamp, raw)}"}
    return requests.post(f"{instance.url}/api/v1/webhooks/airtm", data=raw, headers=headers, timeout=10)


def test_signatures_and_timestamps_are_verified_and_messages_deduplicated(
        airtm_instance: AirtmInstance, airtm: AirtmControl) -> None:
    secret = airtm.config()["webhookSecret"]
    body = {"type": "payin.created", "data": {"id": "00000000-0000-0000-0000-000000000000",
                                              "code": "topup_unknown", "status": "CREATED"}}
    bad = post_webhook(airtm_instance, secret, body, message_id="msg_bad", signature="v1,AAAA")
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "WEBHOOK_SIGNATURE_INVALID")
    stale = post_webhook(airtm_instance, secret, body, message_id="msg_stale", timestamp=int(time.time()) - 600)
    assert (stale.status_code, stale.json()["error"]["code"]) == (401, "WEBHOOK_SIGNATURE_INVALID")
    unsigned = requests.post(f"{airtm_instance.url}/api/v1/webhooks/airtm", json=body, timeout=10)
    assert unsigned.status_code == 401
    message_id = f"msg_{time.monotonic_ns()}"
    good = post_webhook(airtm_instance, secret, body, message_id=message_id)
    assert (good.status_code, good.json()["data"]) == (200, {"status": "ok", "received": True})
    twice = post_webhook(airtm_instance, secret, body, message_id=message_id)
    assert (twice.status_code, twice.json()["data"]["duplicate"]) == (200, True)
    webhook_alias = requests.post(f"{airtm_instance.url}/api/v1/webhooks/airtm", data=json.dumps(body).encode(),
                                  headers={"webhook-id": message_id, "webhook-timestamp": str(int(time.time())),
                                           "webhook-signature": "v1," + sign(secret, message_id, int(time.time()),
                                                                             json.dumps(body).encode()),
                                           "content-type": "application/json"}, timeout=10)
    assert webhook_alias.json()["data"]["duplicate"] is True


@pytest.mark.parametrize("action", ["webhook_duplicate", "webhook_bad_signature", "webhook_stale", "webhook_drop"])
async def test_a_faulty_delivery_of_the_confirmation_still_credits_the_topup_exactly_once(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance, action: str) -> None:
    user, email = await linked_user(airtm_api, airtm)
    airtm.sandbox.add_fault(service="webhooks", action=action, path="*", when={"type": "payin.confirmed"},
                            times=1)
    topup = await topup_paid(airtm_api, airtm, user["id"], email, "30.00")
    # a dropped message is settled by the scheduler's periodic refresh (AIRTM_REFRESH_SECONDS=3 here)
    await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_SUCCEEDED", seconds=30)
    assert [r["action"] for r in airtm.sandbox.fault_log()][-1] == action
    assert (await airtm_api.balance(user["id"]))["available"] == "30.00"
    assert credits_for(airtm_instance.engine, topup["id"]) == 1
    [message] = [m for m in airtm.webhooks() if m["data"]["code"] == topup["id"] and m["type"] == "payin.confirmed"]
    if action == "webhook_duplicate":
        assert len(message["attempts"]) == 2
        airtm.redeliver(message["id"])  # and once more by hand, later: still the same message, still once
    elif action in ("webhook_bad_signature", "webhook_stale"):
        assert message["attempts"][0]["result"] == 401
        assert message["status"] == "delivered"
    assert credits_for(airtm_instance.engine, topup["id"]) == 1
    assert (await airtm_api.balance(user["id"]))["available"] == "30.00"


async def test_a_late_creation_webhook_never_undoes_a_later_state(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "50.00")
    airtm.sandbox.add_fault(service="webhooks", action="webhook_reorder", path="*", when={"type": "payout.created"},
                            times=1, params={"after": 1})
    reply = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "20.00", "destinationType": "bank",
                                                  "destinationRef": "bank_ref", "commit": True})
    assert reply.status == 201, reply.body
    done = await status_of(airtm_api, f"/withdrawals/{reply.data['id']}", "WITHDRAWAL_COMPLETED")

    async def late_processed() -> bool:
        created = [m for m in airtm.webhooks() if m["data"]["code"] == reply.data["id"]
                   and m["type"] == "payout.created"]
        if not created or created[0]["status"] != "delivered":
            return False
        with airtm_instance.engine.connect() as conn:
            return conn.execute(text("SELECT status FROM airtm_webhooks WHERE message_id = :m"),
                                {"m": created[0]["id"]}).scalar() == "PROCESSED"

    await until(late_processed, "the held payout.created to be delivered and processed")
    again = await airtm_api.get(f"/withdrawals/{reply.data['id']}")
    assert again.data["status"] == "WITHDRAWAL_COMPLETED"
    assert again.data["completedAt"] == done["completedAt"]
    assert (await airtm_api.balance(user["id"]))["available"] == "30.00"


async def test_the_original_body_shape_is_accepted_too(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await linked_user(airtm_api, airtm)
    airtm.config(webhookFormat="legacy")
    try:
        topup = await topup_paid(airtm_api, airtm, user["id"], email, "14.00")
        await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_SUCCEEDED")
    finally:
        airtm.config(webhookFormat="svix")
    assert (await airtm_api.balance(user["id"]))["available"] == "14.00"
    assert credits_for(airtm_instance.engine, topup["id"]) == 1


async def test_a_recorded_message_whose_actor_message_was_lost_is_processed_by_the_sweep(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    # As if the web process died between recording the delivery and publishing its actor message.
    user, _ = await linked_user(airtm_api, airtm)
    topup = (await airtm_api.post("/topups", {"userId": user["id"], "amount": "10.00"})).data
    body = {"type": "payin.canceled", "data": {"id": topup["airtmPayinId"], "code": topup["id"],
                                               "status": "CANCELED"}}
    message_id = f"msg_lost_{time.monotonic_ns()}"
    with airtm_instance.engine.begin() as conn:
        conn.execute(text("INSERT INTO airtm_webhooks (message_id, event_type, body) VALUES (:m, :t, :b)"),
                     {"m": message_id, "t": "payin.canceled", "b": json.dumps(body)})
    await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_CANCELED")
    with airtm_instance.engine.connect() as conn:
        row = conn.execute(text("SELECT status, outcome FROM airtm_webhooks WHERE message_id = :m"),
                           {"m": message_id}).one()
        audited = conn.execute(text("SELECT count(*) FROM audit_log WHERE action = 'webhook.received' "
                                    "AND correlation_id = :m"), {"m": message_id}).scalar()
    assert (row.status, row.outcome) == ("PROCESSED", f"{topup['id']} moved")
    assert audited == 1
