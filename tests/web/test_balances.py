"""Balance reads and the administrative balance operations (spec api.md §2.3, §6.1, §6.4, §1.12; events.md §3.3)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator import ids
from orchestrator.db import commands as commands_db
from orchestrator.db import users as users_db
from orchestrator.settings import Settings
from tests.api import Api, idempotency_key, unique
from tests.web.test_errors import assert_error, field_errors, new_key
from tests.web.test_users import ISO_MS, events_of
from web.app import create_app


def balance_events(engine: Engine, user_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["event_type"], e["payload"]) for e in events_of(engine, user_id)
            if e["aggregate_type"] == "Balance"]


def moved(amount: str, before: tuple[str, str], after: tuple[str, str], user_id: str) -> dict[str, Any]:
    """The fields every balance event payload carries (events.md §3.3)."""
    return {"userId": user_id, "amount": amount, "currency": "USD",
            "previousAvailableBalance": before[0], "previousReservedBalance": before[1],
            "newAvailableBalance": after[0], "newReservedBalance": after[1]}


async def reserved_user(api: Api, funded: str, reserved: str, order: str) -> dict[str, Any]:
    user = await api.funded_user(funded)
    reply = await api.post(f"/users/{user['id']}/balance/reserve", {"amount": reserved, "orderId": order})
    assert reply.status == 200, reply.body
    return user


async def test_a_balance_is_read_with_its_total(api: Api) -> None:
    user = await reserved_user(api, "100.00", "30.25", unique("ord"))
    reply = await api.get(f"/users/{user['id']}/balance")
    assert reply.status == 200, reply.body
    assert {k: v for k, v in reply.data.items() if k != "updatedAt"} == {
        "userId": user["id"], "available": "69.75", "reserved": "30.25", "total": "100.00", "currency": "USD"}
    assert ISO_MS.fullmatch(reply.data["updatedAt"])


async def test_the_balance_of_an_unknown_user_is_not_found(api: Api) -> None:
    assert_error(await api.get(f"/users/usr_{'U' * 32}/balance"), 404, "USER_NOT_FOUND")
    assert_error(await api.get("/users/ord_abc/balance"), 404, "USER_NOT_FOUND")


async def test_a_credit_adds_to_available(api: Api, engine: Engine) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit",
                           {"amount": "25.50", "reference": "promo-7", "description": "welcome bonus"})
    assert reply.status == 200, reply.body
    data = reply.data
    assert (data["operation"], data["amount"]) == ("credit", "25.50")
    assert data["previousBalance"] == {"available": "0.00", "reserved": "0.00"}
    assert data["newBalance"] == {"available": "25.50", "reserved": "0.00"}
    assert data["balance"]["available"] == "25.50"
    assert data["balance"]["total"] == "25.50"
    assert data["auditLogId"].startswith("aud_")
    assert balance_events(engine, user["id"]) == [("balance.credited", {
        **moved("25.50", ("0.00", "0.00"), ("25.50", "0.00"), user["id"]),
        "source": "manual_credit", "sourceId": "promo-7", "transactionHash": None, "newBalance": "25.50"})]


async def test_an_operation_answers_with_the_balance_its_own_transaction_left(api: Api, engine: Engine) -> None:
    # Given a user with some money
    user = await api.funded_user("10.00")
    # When a debit answers
    reply = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "2.50"})
    assert reply.status == 200, reply.body
    # Then its balance is the one a read shows now, to the millisecond, and agrees with its newBalance
    now = await api.get(f"/users/{user['id']}/balance")
    assert reply.data["balance"] == now.data
    assert {k: reply.data["balance"][k] for k in ("available", "reserved")} == reply.data["newBalance"]
    # and the web tier had it from the command's result (Result.view), not from reading the balance again
    with engine.connect() as conn:
        view = conn.execute(text("SELECT result->'view' FROM commands WHERE kind = 'adjust_balance' "
                                 "AND payload->>'userId' = :u AND payload->>'operation' = 'debit'"),
                            {"u": user["id"]}).scalar_one()
    assert (Decimal(view["available"]), Decimal(view["reserved"])) == (Decimal("7.50"), Decimal("0"))


async def test_balance_events_name_the_user_the_actor_and_the_request(api: Api, engine: Engine) -> None:
    user = await api.user()
    support = api.as_((await new_key(api, "support"))["key"])
    await support.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"}, headers={"X-Request-ID": "bal-7"})
    [credited] = [e for e in events_of(engine, user["id"]) if e["event_type"] == "balance.credited"]
    assert credited["aggregate_type"] == "Balance"
    assert credited["metadata"]["userId"] == user["id"]
    assert credited["metadata"]["actorType"] == "SUPPORT"
    assert credited["metadata"]["correlationId"] == "bal-7"


async def test_the_audit_entry_named_in_the_answer_records_the_operation(api: Api, engine: Engine) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "3.00", "reference": "r-1"})
    with engine.connect() as conn:
        row = conn.execute(text("SELECT action, resource_id, actor_type, actor_id, payload_after FROM audit_log "
                                "WHERE id = :id"), {"id": reply.data["auditLogId"]}).mappings().one()
    assert (row["action"], row["resource_id"], row["actor_type"], row["actor_id"]) == (
        "balance.credit", user["id"], "MASTER", "master")
    assert row["payload_after"]["amount"] == "3.00"
    assert row["payload_after"]["reference"] == "r-1"


async def test_a_debit_takes_from_available(api: Api, engine: Engine) -> None:
    user = await api.funded_user("100.00")
    reply = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "30.00", "reference": "fee-1"})
    assert reply.status == 200, reply.body
    assert reply.data["previousBalance"] == {"available": "100.00", "reserved": "0.00"}
    assert reply.data["newBalance"] == {"available": "70.00", "reserved": "0.00"}
    assert (await api.balance(user["id"]))["available"] == "70.00"
    assert balance_events(engine, user["id"])[-1] == ("balance.debited", {
        **moved("30.00", ("100.00", "0.00"), ("70.00", "0.00"), user["id"]),
        "destination": "manual_debit", "destinationId": "fee-1", "newBalance": "70.00"})


async def test_a_debit_may_empty_the_available_balance(api: Api) -> None:
    user = await api.funded_user("12.34")
    reply = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "12.34"})
    assert reply.status == 200, reply.body
    assert reply.data["newBalance"] == {"available": "0.00", "reserved": "0.00"}


async def test_a_reserve_moves_available_to_reserved(api: Api, engine: Engine) -> None:
    user = await api.funded_user("100.00")
    reply = await api.post(f"/users/{user['id']}/balance/reserve", {"amount": "40.00", "orderId": "ord-1"})
    assert reply.status == 200, reply.body
    assert reply.data["operation"] == "reserve"
    assert reply.data["previousBalance"] == {"available": "100.00", "reserved": "0.00"}
    assert reply.data["newBalance"] == {"available": "60.00", "reserved": "40.00"}
    balance = await api.balance(user["id"])
    assert (balance["available"], balance["reserved"], balance["total"]) == ("60.00", "40.00", "100.00")
    assert balance_events(engine, user["id"])[-1] == ("balance.reserved", {
        **moved("40.00", ("100.00", "0.00"), ("60.00", "40.00"), user["id"]),
        "orderId": "ord-1", "reservedBalance": "40.00"})


async def test_reference_is_accepted_as_the_alias_of_order_id(api: Api, engine: Engine) -> None:
    user = await api.funded_user("10.00")
    reply = await api.post(f"/users/{user['id']}/balance/reserve", {"amount": "4.00", "reference": "ord-alias"})
    assert reply.status == 200, reply.body
    assert balance_events(engine, user["id"])[-1][1]["orderId"] == "ord-alias"


async def test_cancelling_a_reservation_moves_reserved_back_to_available(api: Api, engine: Engine) -> None:
    user = await reserved_user(api, "100.00", "40.00", "ord-2")
    reply = await api.post(f"/users/{user['id']}/balance/cancel-reservation",
                           {"amount": "15.00", "orderId": "ord-2"})
    assert reply.status == 200, reply.body
    assert reply.data["previousBalance"] == {"available": "60.00", "reserved": "40.00"}
    assert reply.data["newBalance"] == {"available": "75.00", "reserved": "25.00"}
    assert balance_events(engine, user["id"])[-1] == ("balance.released", {
        **moved("15.00", ("60.00", "40.00"), ("75.00", "25.00"), user["id"]),
        "orderId": "ord-2", "reason": "cancel"})


async def test_deducting_reserved_funds_removes_them(api: Api, engine: Engine) -> None:
    user = await reserved_user(api, "100.00", "40.00", "ord-3")
    reply = await api.post(f"/users/{user['id']}/balance/deduct-reserved", {"amount": "10.00", "orderId": "ord-3"})
    assert reply.status == 200, reply.body
    assert reply.data["newBalance"] == {"available": "60.00", "reserved": "30.00"}
    balance = await api.balance(user["id"])
    assert (balance["available"], balance["reserved"], balance["total"]) == ("60.00", "30.00", "90.00")
    assert balance_events(engine, user["id"])[-1] == ("balance.released", {
        **moved("10.00", ("60.00", "40.00"), ("60.00", "30.00"), user["id"]),
        "orderId": "ord-3", "reason": "manual"})


async def test_a_release_pays_the_seller_from_the_buyers_reserved_funds(api: Api, engine: Engine) -> None:
    buyer = await reserved_user(api, "100.00", "40.00", "ord-4")
    seller = await api.funded_user("5.00")
    reply = await api.post(f"/users/{buyer['id']}/balance/release",
                           {"amount": "25.00", "orderId": "ord-4", "sellerId": seller["id"]})
    assert reply.status == 200, reply.body
    # The answer shows the seller's balance.
    assert reply.data["balance"]["userId"] == seller["id"]
    assert reply.data["previousBalance"] == {"available": "5.00", "reserved": "0.00"}
    assert reply.data["newBalance"] == {"available": "30.00", "reserved": "0.00"}
    buyer_after = await api.balance(buyer["id"])
    assert (buyer_after["available"], buyer_after["reserved"]) == ("60.00", "15.00")
    assert (await api.balance(seller["id"]))["available"] == "30.00"
    assert balance_events(engine, buyer["id"])[-1] == ("balance.released", {
        **moved("25.00", ("60.00", "40.00"), ("60.00", "15.00"), buyer["id"]),
        "orderId": "ord-4", "reason": "manual"})
    assert balance_events(engine, seller["id"])[-1] == ("balance.credited", {
        **moved("25.00", ("5.00", "0.00"), ("30.00", "0.00"), seller["id"]),
        "source": "manual_credit", "sourceId": "ord-4", "transactionHash": None, "newBalance": "30.00"})


async def test_recipient_id_is_accepted_as_the_alias_of_seller_id(api: Api) -> None:
    buyer = await reserved_user(api, "10.00", "10.00", "ord-5")
    seller = await api.user()
    reply = await api.post(f"/users/{buyer['id']}/balance/release",
                           {"amount": "10.00", "reference": "ord-5", "recipientId": seller["id"]})
    assert reply.status == 200, reply.body
    assert (await api.balance(seller["id"]))["available"] == "10.00"


async def test_a_release_to_an_unknown_seller_changes_nothing(api: Api) -> None:
    buyer = await reserved_user(api, "10.00", "10.00", "ord-6")
    reply = await api.post(f"/users/{buyer['id']}/balance/release",
                           {"amount": "10.00", "orderId": "ord-6", "sellerId": f"usr_{'S' * 32}"})
    assert_error(reply, 404, "USER_NOT_FOUND")
    after = await api.balance(buyer["id"])
    assert (after["available"], after["reserved"]) == ("0.00", "10.00")


@pytest.mark.parametrize("operation", ["debit", "reserve"])
async def test_moving_more_than_is_available_is_insufficient_funds(api: Api, engine: Engine,
                                                                   operation: str) -> None:
    user = await api.funded_user("100.00")
    reply = await api.post(f"/users/{user['id']}/balance/{operation}",
                           {"amount": "150.00", "orderId": "ord-x"} if operation == "reserve" else {"amount": "150.00"})
    details = assert_error(reply, 422, "INSUFFICIENT_FUNDS")
    assert details == {"available": "100.00", "requested": "150.00", "currency": "USD"}
    after = await api.balance(user["id"])
    assert (after["available"], after["reserved"]) == ("100.00", "0.00")
    assert [t for t, _ in balance_events(engine, user["id"])] == ["balance.credited"]


@pytest.mark.parametrize("operation", ["cancel-reservation", "deduct-reserved", "release"])
async def test_moving_more_than_is_reserved_is_insufficient_reserved_funds(api: Api, operation: str) -> None:
    user = await reserved_user(api, "100.00", "20.00", "ord-7")
    seller = await api.user()
    body = {"amount": "20.01", "orderId": "ord-7"} | ({"sellerId": seller["id"]} if operation == "release" else {})
    reply = await api.post(f"/users/{user['id']}/balance/{operation}", body)
    details = assert_error(reply, 422, "INSUFFICIENT_FUNDS")
    assert details == {"balance": "reserved", "reserved": "20.00", "requested": "20.01", "currency": "USD"}
    after = await api.balance(user["id"])
    assert (after["available"], after["reserved"]) == ("80.00", "20.00")
    assert (await api.balance(seller["id"]))["available"] == "0.00"


@pytest.mark.parametrize(("operation", "body", "missing"), [
    ("credit", {}, "amount"),
    ("reserve", {"amount": "1.00"}, "orderId"),
    ("cancel-reservation", {"amount": "1.00", "orderId": ""}, "orderId"),
    ("release", {"amount": "1.00", "orderId": "o"}, "sellerId"),
])
async def test_required_fields_of_each_operation_are_named(api: Api, operation: str, body: dict[str, Any],
                                                          missing: str) -> None:
    user = await api.funded_user("5.00")
    reply = await api.post(f"/users/{user['id']}/balance/{operation}", body)
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [(missing, "MISSING_REQUIRED_FIELD")]


async def test_an_order_id_field_is_not_part_of_a_credit(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00", "orderId": "ord-1"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("orderId", "UNKNOWN_FIELD")]


async def test_an_operation_on_an_unknown_user_is_not_found(api: Api) -> None:
    reply = await api.post(f"/users/usr_{'Z' * 32}/balance/credit", {"amount": "1.00"})
    assert_error(reply, 404, "USER_NOT_FOUND")


@pytest.mark.parametrize("headers", [{}, {"Prefer": "respond-async"}, {"Idempotency-Key": "unknown-user"}],
                         ids=["waited", "async", "idempotent"])
async def test_an_operation_on_an_unknown_user_records_nothing(api: Api, engine: Engine,
                                                               headers: dict[str, str]) -> None:
    """The user's existence is decided by the command's own insert: 404 and no command row, however the
    request asked to be answered (an idempotent one may be sent again once the user exists)."""
    user_id = ids.new_id("user")  # well formed, never created
    if "Idempotency-Key" in headers:
        headers = {"Idempotency-Key": idempotency_key()}
    reply = await api.post(f"/users/{user_id}/balance/credit", {"amount": "1.00"}, headers=headers)
    assert_error(reply, 404, "USER_NOT_FOUND")
    with engine.connect() as conn:
        recorded = conn.execute(text("SELECT count(*) FROM commands WHERE payload->>'userId' = :u"),
                                {"u": user_id}).scalar()
    assert recorded == 0


@pytest.mark.parametrize(("headers", "status", "shown"), [({}, 200, "3.00"),
                                                          ({"Prefer": "respond-async"}, 202, "1.00")],
                         ids=["waited", "async"])
async def test_a_credit_reads_no_user_apart_from_its_insert(api: Api, headers: dict[str, str], status: int,
                                                            shown: str) -> None:
    """Issue 16: a credit is two database transactions (its command's insert, its worker's) and reads
    nothing else. The insert checks the user and returns it as it stands, which a 202 shows (api.md
    §1.12: the resource in its current state, here before the credit); a 200 shows what the worker's own
    transaction left."""
    user = await api.funded_user("1.00")
    reads = users_db.BY_ID.executions
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "2.00"}, headers=headers)
    assert reply.status == status, reply.body
    assert reply.data["balance"]["available"] == shown
    assert users_db.BY_ID.executions == reads


async def test_an_unknown_operation_is_not_a_route(api: Api) -> None:
    user = await api.user()
    assert_error(await api.post(f"/users/{user['id']}/balance/steal", {"amount": "1.00"}), 404, "NOT_FOUND")


async def test_operations_need_the_support_scope(api: Api) -> None:
    user = await api.user()
    writer = api.as_((await new_key(api, "read", "write"))["key"])
    refused = await writer.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"})
    assert assert_error(refused, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"
    support = api.as_((await new_key(api, "support"))["key"])
    accepted = await support.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"})
    assert accepted.status == 200, accepted.body
    assert (await api.balance(user["id"]))["available"] == "1.00"


async def test_respond_async_answers_202_and_applies_the_change_shortly_after(api: Api) -> None:
    user = await api.funded_user("10.00")
    status_reads = commands_db.STATUS_OF.executions
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "2.00"},
                           headers={"Prefer": "respond-async"})
    assert reply.status == 202, reply.body
    assert commands_db.STATUS_OF.executions == status_reads  # nothing to wait for: the command is not read
    assert reply.headers["Preference-Applied"] == "respond-async"
    assert reply.body["meta"]["commandId"].startswith("cmd_")
    assert reply.body["meta"]["pending"] is True
    assert reply.data["operation"] == "credit"
    assert reply.data["balance"]["userId"] == user["id"]
    deadline = time.monotonic() + 30  # the worker's turn, on a machine as busy as a full run makes it
    for _ in range(3000):
        if (await api.balance(user["id"]))["available"] == "12.00" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert (await api.balance(user["id"]))["available"] == "12.00"


async def test_prefer_wait_is_honoured_and_reported(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "4.00"}, headers={"Prefer": "wait=5"})
    assert reply.status == 200, reply.body
    assert reply.headers["Preference-Applied"] == "wait=5"
    assert reply.data["newBalance"] == {"available": "4.00", "reserved": "0.00"}


@pytest.mark.parametrize("prefer", ["wait=0", "wait=61", "handling=lenient"])
async def test_a_preference_outside_the_contract_is_ignored(api: Api, prefer: str) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "4.00"}, headers={"Prefer": prefer})
    assert reply.status == 200, reply.body
    assert "Preference-Applied" not in reply.headers


async def test_operations_are_refused_where_the_instance_disables_them(api: Api, aiohttp_client: Any,
                                                                       settings: Settings) -> None:
    user = await api.funded_user("10.00")
    locked = Api(await aiohttp_client(create_app(dataclasses.replace(settings, admin_balance_operations=False))),
                 api.credential)
    for operation, body in (("credit", {"amount": "1.00"}), ("debit", {"amount": "1.00"}),
                            ("reserve", {"amount": "1.00", "orderId": "o"})):
        reply = await locked.post(f"/users/{user['id']}/balance/{operation}", body)
        assert_error(reply, 403, "OPERATION_NOT_ALLOWED")
    assert (await locked.get("/config")).data["features"]["manualBalanceOps"] is False
    assert (await locked.balance(user["id"]))["available"] == "10.00"
