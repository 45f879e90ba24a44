"""Orders: create, read, list, reserve, cancel (spec api.md §2.5, §2.7, §9.1-9.5, §9.8; states.md §1.1, §2
O1-O4, §9; events.md §3.3, §3.5, §4; errors.md §2.4, §2.5, §3)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import Engine, text

from orchestrator.db import disputes as disputes_db
from orchestrator.db import escrows as escrows_db
from orchestrator.db import orders as orders_db
from orchestrator.operations import check
from tests.api import Api, idempotency_key, unique
from tests.web.test_errors import assert_error, field_errors
from tests.web.test_users import ISO_MS

ORDER_FIELDS = {"id", "clientOrderRef", "buyerId", "sellerId", "amount", "currency", "status", "finalStatus",
                "fundingMode", "title", "description", "metadata", "escrow", "milestones", "dispute", "createdAt",
                "updatedAt", "closedAt", "grossAmount", "trustlessFee", "platformFee", "netAmount", "distributions"}
MILESTONE_FIELDS = {"id", "orderId", "milestoneRef", "title", "amount", "status", "completedAt", "createdAt"}
UNKNOWN_USER = f"usr_{'Q' * 32}"
UNKNOWN_ORDER = f"ord_{'Q' * 32}"


def body(buyer: str, seller: str, amount: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {"buyerId": buyer, "sellerId": seller, "amount": amount, "title": "Logo Design", **extra}


async def parties(api: Api, funded: str | None = None) -> tuple[str, str]:
    buyer = await (api.funded_user(funded) if funded else api.user())
    seller = await api.user()
    return buyer["id"], seller["id"]


async def new_order(api: Api, buyer: str, seller: str, amount: str = "100.00", **extra: Any) -> dict[str, Any]:
    reply = await api.post("/orders", body(buyer, seller, amount, **extra))
    assert reply.status == 201, reply.body
    return reply.data


async def funded_order(api: Api, funded: str = "100.00", amount: str = "80.00") -> dict[str, Any]:
    buyer, seller = await parties(api, funded)
    return await new_order(api, buyer, seller, amount)


def events(engine: Engine, *aggregate_ids: str) -> list[tuple[str, dict[str, Any]]]:
    """Order and balance events about these aggregates, in the order they were written (read only)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT event_type, payload FROM outbox WHERE aggregate_id = ANY(:ids) "
            "AND aggregate_type IN ('Order', 'Balance') ORDER BY id"), {"ids": list(aggregate_ids)}).all()
    return [(r.event_type, r.payload) for r in rows]


def types(engine: Engine, *aggregate_ids: str) -> list[str]:
    return [t for t, _ in events(engine, *aggregate_ids)]


async def holdings(api: Api, user_id: str) -> tuple[str, str]:
    balance = await api.balance(user_id)
    return balance["available"], balance["reserved"]


async def status_of(api: Api, order_id: str) -> str:
    reply = await api.get(f"/orders/{order_id}")
    assert reply.status == 200, reply.body
    return reply.data["status"]


def moved(user_id: str, amount: str, before: tuple[str, str], after: tuple[str, str]) -> dict[str, Any]:
    """The fields every balance event payload carries (events.md §3.3)."""
    return {"userId": user_id, "amount": amount, "currency": "USD",
            "previousAvailableBalance": before[0], "previousReservedBalance": before[1],
            "newAvailableBalance": after[0], "newReservedBalance": after[1]}


def codes(reply: Any) -> list[tuple[str, str]]:
    return [(f["field"], f["code"]) for f in field_errors(reply)]


# --- create -------------------------------------------------------------------------------------------------------


async def test_a_created_order_has_the_full_order_shape_with_open_milestones(api: Api) -> None:
    buyer, seller = await parties(api)
    ref = unique("ref")
    reply = await api.post("/orders", body(
        buyer, seller, "100.00", currency="USD", description="Design a logo for my startup", clientOrderRef=ref,
        metadata={"listing": 7}, milestones=[{"milestoneRef": "draft", "title": "Draft", "amount": "40.00"},
                                             {"milestoneRef": "final", "title": "Final", "amount": "60.00"}]))
    assert reply.status == 201, reply.body
    order = reply.data
    assert set(order) == ORDER_FIELDS
    assert order["id"].startswith("ord_")
    assert {k: order[k] for k in ORDER_FIELDS - {"id", "milestones", "createdAt", "updatedAt"}} == {
        "clientOrderRef": ref, "buyerId": buyer, "sellerId": seller, "amount": "100.00", "currency": "USD",
        "status": "ORDER_CREATED", "finalStatus": None, "fundingMode": "WALLET", "title": "Logo Design",
        "description": "Design a logo for my startup", "metadata": {"listing": 7}, "escrow": None, "dispute": None,
        "closedAt": None, "grossAmount": None, "trustlessFee": None, "platformFee": None, "netAmount": None,
        "distributions": None}
    assert ISO_MS.fullmatch(order["createdAt"])
    assert ISO_MS.fullmatch(order["updatedAt"])
    assert [set(m) for m in order["milestones"]] == [MILESTONE_FIELDS, MILESTONE_FIELDS]
    assert [(m["orderId"], m["milestoneRef"], m["title"], m["amount"], m["status"], m["completedAt"])
            for m in order["milestones"]] == [(order["id"], "draft", "Draft", "40.00", "OPEN", None),
                                              (order["id"], "final", "Final", "60.00", "OPEN", None)]
    fetched = await api.get(f"/orders/{order['id']}")
    assert fetched.status == 200, fetched.body
    assert fetched.data == order


async def test_an_order_without_optional_fields_has_nulls_and_no_milestones(api: Api) -> None:
    buyer, seller = await parties(api)
    order = await new_order(api, buyer, seller, "1.00")
    assert (order["clientOrderRef"], order["description"], order["metadata"], order["milestones"],
            order["currency"]) == (None, None, None, [], "USD")


async def test_snake_case_aliases_are_accepted_for_parties_ref_and_milestones(api: Api) -> None:
    buyer, seller = await parties(api)
    ref = unique("ref")
    reply = await api.post("/orders", {
        "buyer_id": buyer, "seller_id": seller, "amount": "30.00", "title": "Aliases", "client_order_ref": ref,
        "milestones": [{"ref": "a", "description": "First", "amount": "10.00"},
                       {"milestone_ref": "b", "title": "Second", "amount": "20.00"}]})
    assert reply.status == 201, reply.body
    assert (reply.data["buyerId"], reply.data["sellerId"], reply.data["clientOrderRef"]) == (buyer, seller, ref)
    assert [(m["milestoneRef"], m["title"]) for m in reply.data["milestones"]] == [("a", "First"), ("b", "Second")]


async def test_an_order_between_a_user_and_themself_is_refused(api: Api) -> None:
    buyer, _ = await parties(api)
    assert codes(await api.post("/orders", body(buyer, buyer))) == [("sellerId", "SAME_USER")]


@pytest.mark.parametrize("role", ["buyerId", "sellerId"])
async def test_the_platform_user_cannot_be_a_party(api: Api, platform_user: str, engine: Engine, role: str) -> None:
    user = (await api.user())["id"]
    buyer, seller = (platform_user, user) if role == "buyerId" else (user, platform_user)
    before = types(engine, buyer, seller)
    assert codes(await api.post("/orders", body(buyer, seller))) == [(role, "PLATFORM_USER_NOT_ALLOWED")]
    listed = await api.get("/orders", params={"buyerId": buyer, "sellerId": seller})
    assert listed.data == []
    assert types(engine, buyer, seller) == before


async def test_milestones_must_sum_to_the_order_amount(api: Api) -> None:
    buyer, seller = await parties(api)
    reply = await api.post("/orders", body(buyer, seller, "100.00", milestones=[
        {"milestoneRef": "a", "title": "A", "amount": "40.00"},
        {"milestoneRef": "b", "title": "B", "amount": "59.99"}]))
    assert codes(reply) == [("milestones", "MILESTONE_SUM_MISMATCH")]


async def test_milestone_refs_must_be_unique_within_the_order(api: Api) -> None:
    buyer, seller = await parties(api)
    reply = await api.post("/orders", body(buyer, seller, "100.00", milestones=[
        {"milestoneRef": "a", "title": "A", "amount": "50.00"},
        {"ref": "a", "title": "B", "amount": "50.00"}]))
    assert codes(reply) == [("milestones", "DUPLICATE_MILESTONE_REF")]


@pytest.mark.parametrize(("count", "code"), [(0, "TOO_SHORT"), (51, "TOO_LONG")])
async def test_an_order_holds_one_to_fifty_milestones(api: Api, count: int, code: str) -> None:
    buyer, seller = await parties(api)
    milestones = [{"milestoneRef": f"m{i}", "title": f"M{i}", "amount": "1.00"} for i in range(count)]
    reply = await api.post("/orders", body(buyer, seller, f"{count}.00" if count else "1.00", milestones=milestones))
    [problem] = field_errors(reply)
    assert (problem["field"], problem["code"]) == ("milestones", code)


async def test_fifty_milestones_are_accepted(api: Api) -> None:
    buyer, seller = await parties(api)
    milestones = [{"milestoneRef": f"m{i}", "title": f"M{i}", "amount": "1.00"} for i in range(50)]
    order = await new_order(api, buyer, seller, "50.00", milestones=milestones)
    assert [m["milestoneRef"] for m in order["milestones"]] == [f"m{i}" for i in range(50)]


async def test_milestone_errors_name_the_item_by_its_index(api: Api) -> None:
    buyer, seller = await parties(api)
    reply = await api.post("/orders", body(buyer, seller, "20.00", milestones=[
        {"milestoneRef": "a", "title": "A", "amount": "10.00"},
        {"milestoneRef": "b", "title": "", "amount": "10"}]))
    assert sorted(codes(reply)) == [("milestones[1].amount", "INVALID_AMOUNT_FORMAT"),
                                    ("milestones[1].title", "MISSING_REQUIRED_FIELD")]


async def test_a_currency_other_than_usd_is_refused(api: Api) -> None:
    buyer, seller = await parties(api)
    assert codes(await api.post("/orders", body(buyer, seller, currency="EUR"))) == [("currency", "INVALID_CURRENCY")]


async def test_a_field_and_its_alias_with_different_values_conflict(api: Api) -> None:
    buyer, seller = await parties(api)
    other = (await api.user())["id"]
    reply = await api.post("/orders", body(buyer, seller) | {"buyer_id": other})
    assert [p["code"] for p in field_errors(reply)] == ["ALIAS_CONFLICT"]


@pytest.mark.parametrize(("amount", "code"), [
    ("100", "INVALID_AMOUNT_FORMAT"), ("100.0", "INVALID_AMOUNT_FORMAT"), ("100.000", "INVALID_AMOUNT_FORMAT"),
    ("-50.00", "INVALID_AMOUNT_FORMAT"), ("1e2", "INVALID_AMOUNT_FORMAT"), (100.00, "INVALID_TYPE"),
    ("0.00", "INVALID_AMOUNT"),
])
async def test_a_malformed_amount_is_named_with_its_field_code(api: Api, amount: Any, code: str) -> None:
    buyer, seller = await parties(api)
    assert codes(await api.post("/orders", body(buyer, seller, amount))) == [("amount", code)]


@pytest.mark.parametrize("amount", ["0.99", "50000.01"])
async def test_an_amount_outside_the_order_limits_is_out_of_range(api: Api, amount: str) -> None:
    buyer, seller = await parties(api)
    [problem] = field_errors(await api.post("/orders", body(buyer, seller, amount)))
    assert (problem["field"], problem["code"], problem["min"], problem["max"]) == (
        "amount", "AMOUNT_OUT_OF_RANGE", "1.00", "50000.00")


@pytest.mark.parametrize("amount", ["1.00", "50000.00"])
async def test_the_order_limits_themselves_are_accepted(api: Api, amount: str) -> None:
    buyer, seller = await parties(api)
    assert (await new_order(api, buyer, seller, amount))["amount"] == amount


@pytest.mark.parametrize("role", ["buyerId", "sellerId"])
async def test_a_party_id_without_the_user_prefix_is_refused(api: Api, role: str) -> None:
    buyer, seller = await parties(api)
    sent = body(buyer, seller) | {role: UNKNOWN_ORDER}
    assert codes(await api.post("/orders", sent)) == [(role, "INVALID_ID_PREFIX")]


async def test_an_unknown_body_field_is_refused(api: Api) -> None:
    buyer, seller = await parties(api)
    assert codes(await api.post("/orders", body(buyer, seller, escrowId="esc_1"))) == [("escrowId", "UNKNOWN_FIELD")]


async def test_missing_required_fields_are_all_named(api: Api) -> None:
    assert sorted(codes(await api.post("/orders", {}))) == [
        ("amount", "MISSING_REQUIRED_FIELD"), ("buyerId", "MISSING_REQUIRED_FIELD"),
        ("sellerId", "MISSING_REQUIRED_FIELD"), ("title", "MISSING_REQUIRED_FIELD")]


@pytest.mark.parametrize("role", ["buyerId", "sellerId"])
async def test_an_unknown_party_is_user_not_found_naming_the_field(api: Api, engine: Engine, role: str) -> None:
    buyer, seller = await parties(api)
    sent = body(buyer, seller) | {role: UNKNOWN_USER}
    details = assert_error(await api.post("/orders", sent), 404, "USER_NOT_FOUND")
    assert (details["userId"], details["field"]) == (UNKNOWN_USER, role)
    assert (await api.get("/orders", params={"buyerId": buyer})).data == []


async def test_a_repeated_client_order_ref_with_the_same_terms_returns_the_existing_order(
        api: Api, engine: Engine) -> None:
    buyer, seller = await parties(api)
    ref = unique("ref")
    first = await new_order(api, buyer, seller, "25.00", clientOrderRef=ref)
    again = await api.post("/orders", body(buyer, seller, "25.00", clientOrderRef=ref, title="Another title"))
    assert again.status == 200, again.body
    assert again.data == first
    assert types(engine, first["id"]) == ["order.created"]
    listed = await api.get("/orders", params={"client_order_ref": ref})
    assert [o["id"] for o in listed.data] == [first["id"]]


async def test_concurrent_creates_with_one_client_order_ref_make_one_order(api: Api, engine: Engine) -> None:
    buyer, seller = await parties(api)
    ref = unique("ref")
    replies = await asyncio.gather(*(api.post("/orders", body(buyer, seller, "25.00", clientOrderRef=ref))
                                     for _ in range(10)))
    assert sorted(r.status for r in replies) == [200] * 9 + [201], [r.body for r in replies]
    assert len({r.data["id"] for r in replies}) == 1
    assert types(engine, replies[0].data["id"]) == ["order.created"]


@pytest.mark.parametrize("change", ["amount", "sellerId", "buyerId"])
async def test_a_client_order_ref_reused_with_other_terms_is_a_conflict(api: Api, change: str) -> None:
    buyer, seller = await parties(api)
    other = (await api.user())["id"]
    ref = unique("ref")
    first = await new_order(api, buyer, seller, "25.00", clientOrderRef=ref)
    sent = body(buyer, seller, "25.00", clientOrderRef=ref) | {change: "26.00" if change == "amount" else other}
    assert_error(await api.post("/orders", sent), 409, "CLIENT_ORDER_REF_CONFLICT")
    listed = await api.get("/orders", params={"clientOrderRef": ref})
    assert [(o["id"], o["amount"]) for o in listed.data] == [(first["id"], "25.00")]


async def test_creating_an_order_emits_order_created_and_moves_no_money(api: Api, engine: Engine) -> None:
    buyer, seller = await parties(api, "10.00")
    ref = unique("ref")
    order = await new_order(api, buyer, seller, "12.50", clientOrderRef=ref, description="d")
    assert events(engine, order["id"]) == [("order.created", {
        "orderId": order["id"], "buyerId": buyer, "sellerId": seller, "amount": "12.50", "currency": "USD",
        "title": "Logo Design", "description": "d", "clientOrderRef": ref})]
    assert types(engine, buyer) == ["balance.credited"]
    assert await holdings(api, buyer) == ("10.00", "0.00")


async def test_a_retried_create_with_the_same_idempotency_key_makes_one_order(api: Api, engine: Engine) -> None:
    buyer, seller = await parties(api)
    key = idempotency_key()
    first = await api.post("/orders", body(buyer, seller), headers={"Idempotency-Key": key})
    again = await api.post("/orders", body(buyer, seller), headers={"Idempotency-Key": key})
    assert first.status == again.status == 201, (first.body, again.body)
    assert again.headers["Idempotency-Replay"] == "true"
    assert again.data == first.data
    racing = await asyncio.gather(*(api.post("/orders", body(buyer, seller), headers={"Idempotency-Key": key})
                                    for _ in range(5)))
    assert all(r.status == 201 and r.data["id"] == first.data["id"] for r in racing), [r.body for r in racing]
    listed = await api.get("/orders", params={"buyerId": buyer})
    assert [o["id"] for o in listed.data] == [first.data["id"]]
    assert types(engine, first.data["id"]) == ["order.created"]


# --- read and list ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("order_id", [UNKNOWN_ORDER, f"usr_{'Q' * 32}", "nonsense"])
async def test_reading_an_unknown_or_wrongly_prefixed_order_is_order_not_found(api: Api, order_id: str) -> None:
    assert_error(await api.get(f"/orders/{order_id}"), 404, "ORDER_NOT_FOUND")
    assert_error(await api.get(f"/orders/{order_id}/milestones"), 404, "ORDER_NOT_FOUND")
    assert_error(await api.post(f"/orders/{order_id}/reserve"), 404, "ORDER_NOT_FOUND")
    assert_error(await api.post(f"/orders/{order_id}/cancel"), 404, "ORDER_NOT_FOUND")


async def test_list_filters_combine_with_and(api: Api) -> None:
    buyer, seller = await parties(api)
    other_buyer, other_seller = await parties(api)
    ref = unique("ref")
    wanted = await new_order(api, buyer, seller, clientOrderRef=ref)
    other_seller_order = await new_order(api, buyer, other_seller)
    other_buyer_order = await new_order(api, other_buyer, seller)
    canceled = await new_order(api, buyer, seller)
    assert (await api.post(f"/orders/{canceled['id']}/cancel")).status == 200

    async def listed(**params: str) -> list[str]:
        reply = await api.get("/orders", params=params)
        assert reply.status == 200, reply.body
        return [o["id"] for o in reply.data]

    assert await listed(buyerId=buyer, sellerId=seller) == [canceled["id"], wanted["id"]]
    assert await listed(buyer_id=buyer, seller_id=seller, status="ORDER_CREATED") == [wanted["id"]]
    assert await listed(buyerId=buyer, status="CLOSED") == [canceled["id"]]
    assert await listed(sellerId=seller) == [canceled["id"], other_buyer_order["id"], wanted["id"]]
    assert await listed(buyerId=buyer, sellerId=other_seller) == [other_seller_order["id"]]
    assert await listed(clientOrderRef=ref, buyerId=buyer) == [wanted["id"]]
    assert await listed(clientOrderRef=ref, buyerId=other_buyer) == []


async def test_the_created_range_is_inclusive_at_both_ends(api: Api) -> None:
    buyer, seller = await parties(api)
    first, middle, last = [await new_order(api, buyer, seller) for _ in range(3)]

    async def listed(**params: str) -> list[str]:
        reply = await api.get("/orders", params={"buyerId": buyer, **params})
        assert reply.status == 200, reply.body
        return [o["id"] for o in reply.data]

    assert await listed(createdAfter=middle["createdAt"]) == [last["id"], middle["id"]]
    assert await listed(created_before=middle["createdAt"]) == [middle["id"], first["id"]]
    assert await listed(created_after=middle["createdAt"], createdBefore=middle["createdAt"]) == [middle["id"]]
    assert await listed(createdAfter="2000-01-01T00:00:00+00:00", createdBefore="2000-01-02T00:00:00Z") == []


@pytest.mark.parametrize(("params", "field", "code"), [
    ({"status": "created"}, "status", "INVALID_ENUM"),
    ({"status": "RESOLVED"}, "status", "INVALID_ENUM"),
    ({"createdAfter": "yesterday"}, "createdAfter", "INVALID_FORMAT"),
    ({"cursor": UNKNOWN_ORDER}, "cursor", "INVALID_CURSOR"),
    ({"limit": "0"}, "limit", "INVALID_FORMAT"),
])
async def test_invalid_list_parameters_are_refused(api: Api, params: dict[str, str], field: str, code: str) -> None:
    [problem] = field_errors(await api.get("/orders", params=params))
    assert (problem["field"], problem["code"]) == (field, code)
    if code == "INVALID_ENUM":
        assert "FUNDS_RESERVED" in problem["allowed"]
        assert "CLOSED" in problem["allowed"]


@pytest.mark.parametrize("params", [{"buyerId": UNKNOWN_ORDER}, {"seller_id": "seller-1"}])
async def test_a_party_filter_without_the_user_prefix_is_refused(api: Api, params: dict[str, str]) -> None:
    [problem] = field_errors(await api.get("/orders", params=params))
    assert (problem["field"], problem["code"]) == ("sellerId" if "seller_id" in params else "buyerId",
                                                   "INVALID_ID_PREFIX")


async def test_a_filter_and_its_alias_with_different_values_conflict(api: Api) -> None:
    buyer, seller = await parties(api)
    await new_order(api, buyer, seller)
    reply = await api.get("/orders", params={"buyerId": buyer, "buyer_id": seller})
    assert [p["code"] for p in field_errors(reply)] == ["ALIAS_CONFLICT"]
    same = await api.get("/orders", params={"buyerId": buyer, "buyer_id": buyer})
    assert (same.status, len(same.data)) == (200, 1)


async def test_the_list_pages_newest_first_with_a_cursor(api: Api) -> None:
    buyer, seller = await parties(api)
    created = [(await new_order(api, buyer, seller))["id"] for _ in range(5)]
    seen: list[str] = []
    pages: list[tuple[int, bool]] = []
    cursor: str | None = None
    while True:
        params = {"buyerId": buyer, "limit": "2"} | ({"cursor": cursor} if cursor else {})
        reply = await api.get("/orders", params=params)
        assert reply.status == 200, reply.body
        pagination = reply.body["meta"]["pagination"]
        ids = [o["id"] for o in reply.data]
        pages.append((len(ids), pagination["hasMore"]))
        assert pagination["limit"] == 2
        assert pagination["nextCursor"] == (ids[-1] if pagination["hasMore"] else None)
        seen += ids
        cursor = pagination["nextCursor"]
        if cursor is None:
            break
    assert pages == [(2, True), (2, True), (1, False)]
    assert seen == created[::-1]


async def test_a_list_page_is_one_statement_and_shows_each_order_as_read_alone(
        api: Api, client: TestClient) -> None:
    # Given five orders of one buyer: with several milestones, with one, with none, and a cancelled one
    buyer, seller = await parties(api)
    created = []
    for count in (3, 1, 0, 2, 0):
        milestones = [{"milestoneRef": f"m{i}", "title": f"M{i}", "amount": "10.00"} for i in range(count)]
        created.append(await new_order(api, buyer, seller, f"{max(count, 1) * 10}.00",
                                       **({"milestones": milestones} if milestones else {})))
    assert (await api.post(f"/orders/{created[3]['id']}/cancel", {})).status == 200
    page_query, _ = orders_db.page(filters={"buyerId": buyer}, after=None, limit=20)
    reads = (page_query, orders_db.VIEW_BY_ID, orders_db.BY_ID, orders_db.MILESTONES_OF, escrows_db.OF_ORDER,
             disputes_db.OF_ORDER)
    before = [q.executions for q in reads]
    # When the buyer's orders are listed
    reply = await api.get("/orders", params={"buyerId": buyer})
    assert reply.status == 200, reply.body
    # Then the page was one statement, milestones, escrows and disputes included, and no order was read alone
    made = [q.executions - b for q, b in zip(reads, before, strict=True)]
    assert made == [1, 0, 0, 0, 0, 0], made
    # And each listed order is exactly what reading it alone answers
    assert [o["id"] for o in reply.data] == [o["id"] for o in created[::-1]]
    for listed in reply.data:
        alone = await api.get(f"/orders/{listed['id']}")
        assert listed == alone.data
    assert [len(o["milestones"]) for o in reply.data] == [0, 2, 0, 1, 3]


async def test_milestones_are_listed_in_creation_order(api: Api) -> None:
    buyer, seller = await parties(api)
    refs = ["zeta", "alpha", "mu"]
    order = await new_order(api, buyer, seller, "30.00", milestones=[
        {"milestoneRef": r, "title": r.title(), "amount": "10.00"} for r in refs])
    reply = await api.get(f"/orders/{order['id']}/milestones")
    assert reply.status == 200, reply.body
    assert "pagination" not in reply.body["meta"]
    assert [m["milestoneRef"] for m in reply.data] == refs
    assert reply.data == order["milestones"]
    assert all(set(m) == MILESTONE_FIELDS and m["status"] == "OPEN" for m in reply.data)


async def test_an_order_without_milestones_lists_none(api: Api) -> None:
    order = await funded_order(api)
    reply = await api.get(f"/orders/{order['id']}/milestones")
    assert (reply.status, reply.data) == (200, [])


# --- reserve ------------------------------------------------------------------------------------------------------


async def test_reserving_moves_the_order_amount_from_available_to_reserved(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "80.00")
    buyer = order["buyerId"]
    assert await holdings(api, buyer) == ("100.00", "0.00")
    reply = await api.post(f"/orders/{order['id']}/reserve")
    assert reply.status == 200, reply.body
    assert set(reply.data) == ORDER_FIELDS
    assert (reply.data["id"], reply.data["status"], reply.data["amount"]) == (order["id"], "FUNDS_RESERVED", "80.00")
    assert await status_of(api, order["id"]) == "FUNDS_RESERVED"
    assert await holdings(api, buyer) == ("20.00", "80.00")
    assert events(engine, order["id"], buyer)[-2:] == [
        ("balance.reserved", {**moved(buyer, "80.00", ("100.00", "0.00"), ("20.00", "80.00")),
                              "orderId": order["id"], "reservedBalance": "80.00"}),
        ("order.funds_reserved", {"orderId": order["id"], "buyerId": buyer, "amount": "80.00", "currency": "USD",
                                  "reservedBalance": "80.00", "availableBalance": "20.00"})]
    assert types(engine, order["id"], buyer) == [
        "balance.credited", "order.created", "balance.reserved", "order.funds_reserved"]


async def test_reserving_with_the_order_amount_in_the_body_is_accepted(api: Api) -> None:
    order = await funded_order(api, "100.00", "80.00")
    reply = await api.post(f"/orders/{order['id']}/reserve", {"amount": "80.00"})
    assert (reply.status, reply.data["status"]) == (200, "FUNDS_RESERVED")
    assert await holdings(api, order["buyerId"]) == ("20.00", "80.00")


@pytest.mark.parametrize("amount", ["79.99", "80.01", "100.00"])
async def test_reserving_another_amount_than_the_orders_changes_nothing(api: Api, engine: Engine,
                                                                        amount: str) -> None:
    order = await funded_order(api, "100.00", "80.00")
    before = events(engine, order["id"], order["buyerId"])
    assert_error(await api.post(f"/orders/{order['id']}/reserve", {"amount": amount}), 422, "RESERVE_MISMATCH_AMOUNT")
    assert await status_of(api, order["id"]) == "ORDER_CREATED"
    assert await holdings(api, order["buyerId"]) == ("100.00", "0.00")
    assert events(engine, order["id"], order["buyerId"]) == before


async def test_reserving_twice_is_funds_already_reserved(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "200.00", "80.00")
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    details = assert_error(await api.post(f"/orders/{order['id']}/reserve"), 409, "FUNDS_ALREADY_RESERVED")
    assert (details["resource"], details["id"], details["currentState"]) == ("Order", order["id"], "FUNDS_RESERVED")
    assert await holdings(api, order["buyerId"]) == ("120.00", "80.00")
    assert types(engine, order["buyerId"]).count("balance.reserved") == 1


async def test_reserving_more_than_is_available_is_insufficient_funds(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "50.00", "100.00")
    details = assert_error(await api.post(f"/orders/{order['id']}/reserve"), 422, "INSUFFICIENT_FUNDS")
    assert details == {"available": "50.00", "requested": "100.00", "currency": "USD"}
    assert await status_of(api, order["id"]) == "ORDER_CREATED"
    assert await holdings(api, order["buyerId"]) == ("50.00", "0.00")
    assert types(engine, order["id"], order["buyerId"]) == ["balance.credited", "order.created"]


async def test_a_buyer_may_reserve_exactly_the_available_balance(api: Api) -> None:
    order = await funded_order(api, "80.00", "80.00")
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    assert await holdings(api, order["buyerId"]) == ("0.00", "80.00")


async def test_the_reserve_body_refuses_unknown_fields(api: Api) -> None:
    order = await funded_order(api)
    assert codes(await api.post(f"/orders/{order['id']}/reserve", {"amount": "80.00", "currency": "USD"})) == [
        ("currency", "UNKNOWN_FIELD")]
    assert await status_of(api, order["id"]) == "ORDER_CREATED"


# --- cancel -------------------------------------------------------------------------------------------------------


async def test_cancelling_a_created_order_closes_it_without_touching_money(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "80.00")
    buyer = order["buyerId"]
    reply = await api.post(f"/orders/{order['id']}/cancel", {"reason": "changed my mind", "canceledBy": "BUYER"})
    assert reply.status == 200, reply.body
    closed = reply.data
    assert (closed["status"], closed["finalStatus"]) == ("CLOSED", "CANCELED")
    assert ISO_MS.fullmatch(closed["closedAt"])
    assert (await api.get(f"/orders/{order['id']}")).data == closed
    assert await holdings(api, buyer) == ("100.00", "0.00")
    assert types(engine, buyer) == ["balance.credited"]
    assert events(engine, order["id"])[1:] == [
        ("order.canceled", {"orderId": order["id"], "buyerId": buyer, "canceledBy": "BUYER",
                            "reason": "changed my mind", "canceledAt": closed["closedAt"], "fundsReleased": False}),
        ("order.closed", {"orderId": order["id"], "finalStatus": "CANCELED", "closedAt": closed["closedAt"]})]


async def test_cancelling_a_reserved_order_returns_the_reservation_first(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "80.00")
    buyer = order["buyerId"]
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    reply = await api.post(f"/orders/{order['id']}/cancel")
    assert reply.status == 200, reply.body
    assert (reply.data["status"], reply.data["finalStatus"]) == ("CLOSED", "CANCELED")
    assert ISO_MS.fullmatch(reply.data["closedAt"])
    assert await holdings(api, buyer) == ("100.00", "0.00")
    assert events(engine, order["id"], buyer)[-3:] == [
        ("balance.released", {**moved(buyer, "80.00", ("20.00", "80.00"), ("100.00", "0.00")),
                              "orderId": order["id"], "reason": "cancel"}),
        ("order.canceled", {"orderId": order["id"], "buyerId": buyer, "canceledBy": None, "reason": None,
                            "canceledAt": reply.data["closedAt"], "fundsReleased": True}),
        ("order.closed", {"orderId": order["id"], "finalStatus": "CANCELED", "closedAt": reply.data["closedAt"]})]


async def test_cancelling_keeps_open_milestones_as_they_are(api: Api) -> None:
    buyer, seller = await parties(api)
    order = await new_order(api, buyer, seller, "10.00", milestones=[{"ref": "only", "title": "T", "amount": "10.00"}])
    reply = await api.post(f"/orders/{order['id']}/cancel")
    assert [m["status"] for m in reply.data["milestones"]] == ["OPEN"]


async def test_a_closed_order_cannot_be_cancelled_or_reserved_again(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "80.00")
    assert (await api.post(f"/orders/{order['id']}/cancel")).status == 200
    before = events(engine, order["id"], order["buyerId"])
    details = assert_error(await api.post(f"/orders/{order['id']}/cancel"), 409, "INVALID_STATE_TRANSITION")
    assert details == {"resource": "Order", "id": order["id"], "currentState": "CLOSED",
                       "attemptedAction": "cancel", "allowedStates": ["FUNDS_RESERVED", "ORDER_CREATED"]}
    details = assert_error(await api.post(f"/orders/{order['id']}/reserve"), 409, "INVALID_STATE_TRANSITION")
    assert (details["currentState"], details["attemptedAction"], details["allowedStates"]) == (
        "CLOSED", "reserve", ["ORDER_CREATED"])
    assert await holdings(api, order["buyerId"]) == ("100.00", "0.00")
    assert events(engine, order["id"], order["buyerId"]) == before


async def test_the_cancel_body_is_validated(api: Api) -> None:
    order = await funded_order(api)
    reply = await api.post(f"/orders/{order['id']}/cancel", {"reason": "x" * 501, "by": "BUYER"})
    assert sorted(codes(reply)) == [("by", "UNKNOWN_FIELD"), ("reason", "TOO_LONG")]
    assert await status_of(api, order["id"]) == "ORDER_CREATED"


# --- concurrency --------------------------------------------------------------------------------------------------

RACE_CODES = {"FUNDS_ALREADY_RESERVED", "INVALID_STATE_TRANSITION"}


async def test_racing_reserves_and_cancels_leave_one_consistent_outcome(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "60.00")
    buyer, path = order["buyerId"], f"/orders/{order['id']}"
    actions = ["cancel" if i % 5 == 4 else "reserve" for i in range(50)]  # 40 reserves, 10 cancels
    replies = await asyncio.gather(*(api.post(f"{path}/{action}") for action in actions))
    outcomes = list(zip(actions, replies, strict=True))
    refused = [(a, r.status, r.body) for a, r in outcomes if r.status != 200]
    assert all(status == 409 and b["error"]["code"] in RACE_CODES for _, status, b in refused), refused
    reserved = sum(1 for a, r in outcomes if a == "reserve" and r.status == 200)
    assert reserved <= 1
    assert sum(1 for a, r in outcomes if a == "cancel" and r.status == 200) == 1
    final = (await api.get(path)).data
    assert (final["status"], final["finalStatus"]) == ("CLOSED", "CANCELED")
    assert await holdings(api, buyer) == ("100.00", "0.00")
    order_events = types(engine, order["id"], buyer)
    assert order_events.count("balance.reserved") == order_events.count("balance.released") == reserved
    assert order_events.count("order.canceled") == order_events.count("order.closed") == 1
    [canceled] = [p for t, p in events(engine, order["id"]) if t == "order.canceled"]
    assert canceled["fundsReleased"] is (reserved == 1)
    assert check.verify(engine).problems == []


async def test_racing_reserves_take_the_funds_exactly_once(api: Api, engine: Engine) -> None:
    order = await funded_order(api, "100.00", "60.00")
    replies = await asyncio.gather(*(api.post(f"/orders/{order['id']}/reserve") for _ in range(50)))
    assert sorted(r.status for r in replies) == [200] + [409] * 49, [r.body for r in replies if r.status != 200]
    assert {r.error["code"] for r in replies if r.status == 409} == {"FUNDS_ALREADY_RESERVED"}
    assert await status_of(api, order["id"]) == "FUNDS_RESERVED"
    assert await holdings(api, order["buyerId"]) == ("40.00", "60.00")
    assert types(engine, order["buyerId"]).count("balance.reserved") == 1
    assert check.verify(engine).problems == []


async def test_two_orders_racing_for_one_balance_reserve_only_what_is_there(api: Api, engine: Engine) -> None:
    buyer, seller = await parties(api, "100.00")
    orders = [await new_order(api, buyer, seller, "60.00") for _ in range(2)]
    replies = await asyncio.gather(*(api.post(f"/orders/{o['id']}/reserve") for o in orders))
    assert sorted(r.status for r in replies) == [200, 422], [r.body for r in replies]
    [poor] = [r for r in replies if r.status == 422]
    assert assert_error(poor, 422, "INSUFFICIENT_FUNDS") == {
        "available": "40.00", "requested": "60.00", "currency": "USD"}
    assert sorted([await status_of(api, o["id"]) for o in orders]) == ["FUNDS_RESERVED", "ORDER_CREATED"]
    assert await holdings(api, buyer) == ("40.00", "60.00")
    assert check.verify(engine).problems == []
