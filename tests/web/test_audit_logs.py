"""``GET /audit/logs`` (spec api.md §15) and the entries the administrative flows write."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.api import Api, unique


async def entries(api: Api, **filters: str) -> list[dict[str, Any]]:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    reply = await api.get(f"/audit/logs?{query}")
    assert reply.status == 200, reply.body
    return reply.data


async def test_audit_logs_need_the_support_scope(api: Api) -> None:
    reader = await api.key("read", "write")
    refused = await api.as_(reader).get("/audit/logs")
    assert refused.status == 403
    support = await api.key("support")
    assert (await api.as_(support).get("/audit/logs")).status == 200


async def test_a_user_creation_is_one_entry_with_the_request_ids_and_the_email_shortened(api: Api) -> None:
    request_id, key = f"req-{uuid.uuid4()}", str(uuid.uuid4())
    reply = await api.post("/users", {"externalUserId": unique("ext"), "email": "maria.lopez@example.com"},
                           headers={"X-Request-ID": request_id, "Idempotency-Key": key})
    user = reply.data
    found = await entries(api, resourceId=user["id"])
    assert [e["action"] for e in found] == ["user.created"]
    entry = found[0]
    assert (entry["resourceType"], entry["userId"], entry["actorType"], entry["actorId"]) == (
        "User", user["id"], "MASTER", "master")
    assert (entry["correlationId"], entry["requestId"], entry["idempotencyKey"]) == (request_id, request_id, key)
    assert entry["result"] == "SUCCESS"
    assert entry["id"].startswith("aud_")
    assert "maria.lopez@example.com" not in str(entry)
    assert "m***@example.com" in str(entry["payloadAfter"])


async def test_maintenance_toggles_are_audited_with_before_and_after(api: Api) -> None:
    enabled = await api.post("/admin/maintenance/enable", {"message": "upgrading"})
    assert enabled.status == 200, enabled.body
    disabled = await api.post("/admin/maintenance/disable")
    assert disabled.status == 200, disabled.body
    found = await entries(api, resourceType="maintenance", limit="2")
    assert [e["action"] for e in found] == ["maintenance.disabled", "maintenance.enabled"]
    assert found[1]["payloadBefore"] == {"enabled": False, "message": None}
    assert found[1]["payloadAfter"] == {"enabled": True, "message": "upgrading"}
    assert found[0]["payloadAfter"] == {"enabled": False, "message": None}


async def test_api_key_creation_token_minting_and_revocation_are_audited_without_the_key(api: Api) -> None:
    created = await api.post("/auth/api-keys", {"name": unique("audited"), "scopes": ["read"]})
    key_id, plaintext = created.data["id"], created.data["key"]
    minted = await api.post(f"/auth/api-keys/{key_id}/token", {"ttl": 60})
    assert minted.status == 201, minted.body
    revoked = await api.delete(f"/auth/api-keys/{key_id}")
    assert revoked.status == 200
    found = await entries(api, resourceId=key_id)
    assert [e["action"] for e in found] == ["api_key.revoked", "api_key.token_minted", "api_key.created"]
    assert found[0]["payloadBefore"]["status"] == "ACTIVE"
    assert found[0]["payloadAfter"]["status"] == "REVOKED"
    assert {e["resourceType"] for e in found} == {"ApiKey"}
    text = str(found)
    assert plaintext not in text
    assert minted.data["token"] not in text
    assert plaintext[-8:] not in text


async def test_an_administrative_credit_is_its_own_entry_beside_its_events_entries(api: Api) -> None:
    user = await api.user()
    credit = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "12.50", "reference": "promo"})
    assert credit.status == 200, credit.body
    found = await entries(api, userId=user["id"], resourceType="Balance")
    by_action = {e["action"]: e for e in found}
    assert sorted(by_action) == ["balance.credit", "balance.credited"]
    admin = by_action["balance.credit"]
    assert admin["id"] == credit.data["auditLogId"]
    assert admin["payloadBefore"] == {"available": "0.00", "reserved": "0.00"}
    assert (admin["payloadAfter"]["amount"], admin["payloadAfter"]["available"]) == ("12.50", "12.50")
    assert admin["correlationId"] == by_action["balance.credited"]["correlationId"] == credit.body["meta"]["requestId"]


async def test_a_failed_operation_is_audited_as_a_failure_with_its_error(api: Api) -> None:
    user = await api.funded_user("5.00")
    refused = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "9.00"})
    assert refused.status == 422
    found = await entries(api, userId=user["id"], action="command.adjust_balance")
    assert len(found) == 1
    entry = found[0]
    assert (entry["result"], entry["error"]["code"]) == ("FAILURE", "INSUFFICIENT_FUNDS")
    assert entry["payloadAfter"]["request"]["amount"] == "9.00"
    assert entry["correlationId"] == refused.headers["X-Request-ID"]


async def test_filters_pagination_and_order(api: Api) -> None:
    user = await api.user()
    for amount in ("1.00", "2.00", "3.00"):
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": amount})).status == 200
    everything = await entries(api, userId=user["id"], resourceType="BALANCE", limit="100")
    assert len(everything) == 6  # (balance.credit + balance.credited) x 3; the user's own are not Balance
    stamps = [(e["occurredAt"], e["id"]) for e in everything]
    assert stamps == sorted(stamps, reverse=True)
    # pages of two follow the cursor to the end, without repeats
    seen, cursor = [], None
    while True:
        after = f"&cursor={cursor}" if cursor else ""
        reply = await api.get(f"/audit/logs?userId={user['id']}&resourceType=Balance&limit=2{after}")
        seen += [e["id"] for e in reply.data]
        cursor = reply.body["meta"]["pagination"]["nextCursor"]
        if not reply.body["meta"]["pagination"]["hasMore"]:
            break
    assert seen == [e["id"] for e in everything]
    # action, and a time window around the first credit
    assert len(await entries(api, userId=user["id"], action="balance.credited")) == 3
    assert [e["action"] for e in await entries(api, userId=user["id"], resourceType="user")] == ["user.created"]
    first = everything[-1]
    window = await entries(api, userId=user["id"], **{"from": first["occurredAt"], "to": first["occurredAt"]})
    assert first["id"] in [e["id"] for e in window]
    assert await entries(api, userId=user["id"], to="2000-01-01") == []


@pytest.mark.parametrize(("query", "field", "code"), [
    ("colour=red", "colour", "UNKNOWN_FIELD"),
    ("from=yesterday", "from", "INVALID_FORMAT"),
    ("to=2026-13-40", "to", "INVALID_FORMAT"),
    ("from=2026-12-01T10:00:00", "from", "INVALID_FORMAT"),
    ("from=2026-12-02&to=2026-12-01", "from", "INVALID_RANGE"),
    ("cursor=aud_doesnotexist", "cursor", "INVALID_CURSOR"),
    ("cursor=ord_abc", "cursor", "INVALID_CURSOR"),
    ("limit=0", "limit", "INVALID_FORMAT"),
    ("userId=ord_abc", "userId", "INVALID_FORMAT"),
])
async def test_bad_queries_get_400_validation_error(api: Api, query: str, field: str, code: str) -> None:
    reply = await api.get(f"/audit/logs?{query}")
    assert reply.status == 400, reply.body
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["details"]["fields"][0]["field"] == field
    assert reply.error["details"]["fields"][0]["code"] == code


async def test_entries_are_chained_once_the_relay_has_run(api: Api) -> None:
    user = await api.user()
    for _ in range(50):
        found = await entries(api, resourceId=user["id"])
        if found and found[0]["position"] is not None:
            break
        await asyncio.sleep(0.1)
    assert found[0]["position"] > 0
    assert len(found[0]["entryHash"]) == 64


async def test_a_balance_sync_is_audited_with_its_figures(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/sync")
    assert reply.status == 200, reply.body
    found = await entries(api, resourceId=user["id"], action="balance.sync")
    assert len(found) == 1
    assert found[0]["result"] in ("SUCCESS", "DISCREPANCY_FOUND")
    assert found[0]["payloadAfter"]["localBalance"] == "0.00"
