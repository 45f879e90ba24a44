"""Users: create (idempotent on externalUserId), read and list (spec api.md §2.2, §5.1-5.3, events.md §3.1)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.api import Api, unique
from tests.web.test_errors import assert_error, field_errors

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
USER_ID = re.compile(r"usr_[A-Za-z0-9]{32}")


def events_of(engine: Engine, aggregate_id: str) -> list[dict[str, Any]]:
    """The outbox rows about one aggregate, oldest first (read only)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT event_id, event_type, aggregate_type, payload, metadata FROM outbox "
            "WHERE aggregate_id = :id ORDER BY id"), {"id": aggregate_id}).mappings().all()
    return [dict(r) for r in rows]


def email() -> str:
    return f"{unique('mail')}@example.com"


async def test_a_new_user_starts_active_with_a_zero_balance(api: Api) -> None:
    external, address = unique("ext"), email()
    reply = await api.post("/users", {"externalUserId": external, "email": address, "type": "SELLER",
                                      "metadata": {"tier": "gold", "tags": [1, 2]}})
    assert reply.status == 201, reply.body
    user = reply.data
    assert USER_ID.fullmatch(user["id"])
    assert {k: user[k] for k in ("externalUserId", "email", "type", "status", "metadata")} == {
        "externalUserId": external, "email": address, "type": "SELLER", "status": "ACTIVE",
        "metadata": {"tier": "gold", "tags": [1, 2]}}
    assert user["balance"] == {"available": "0.00", "reserved": "0.00", "total": "0.00", "currency": "USD"}
    assert (user["airtmLinked"], user["airtmUserId"], user["airtmLinkedAt"]) == (False, None, None)
    assert ISO_MS.fullmatch(user["createdAt"])
    assert ISO_MS.fullmatch(user["updatedAt"])


async def test_optional_fields_default_and_are_present_as_null(api: Api) -> None:
    external = unique("ext")
    user = (await api.post("/users", {"externalUserId": external})).data
    assert (user["email"], user["type"], user["metadata"]) == (None, "BOTH", None)


async def test_creating_a_user_writes_one_user_created_event(api: Api, engine: Engine) -> None:
    external, address = unique("ext"), email()
    user = (await api.post("/users", {"externalUserId": external, "email": address, "type": "BUYER"})).data
    [event] = events_of(engine, user["id"])
    assert event["event_type"] == "user.created"
    assert event["aggregate_type"] == "User"
    assert event["event_id"].startswith("evt_")
    assert event["payload"] == {"userId": user["id"], "externalUserId": external, "email": address,
                                "type": "BUYER", "status": "ACTIVE"}
    assert event["metadata"]["userId"] == user["id"]


async def test_the_event_carries_the_request_id_as_correlation(api: Api, engine: Engine) -> None:
    request_id = unique("corr")
    reply = await api.post("/users", {"externalUserId": unique("ext")}, headers={"X-Request-ID": request_id})
    [event] = events_of(engine, reply.data["id"])
    assert event["metadata"]["correlationId"] == request_id


async def test_a_known_external_id_returns_the_existing_user_unchanged(api: Api, engine: Engine) -> None:
    external = unique("ext")
    first = await api.post("/users", {"externalUserId": external, "email": email(), "type": "BUYER"})
    assert first.status == 201, first.body
    again = await api.post("/users", {"externalUserId": external, "email": email(), "type": "SELLER",
                                      "metadata": {"new": True}})
    assert again.status == 200, again.body
    assert again.data == first.data
    assert [e["event_type"] for e in events_of(engine, first.data["id"])] == ["user.created"]


async def test_the_snake_case_alias_of_the_external_id_is_accepted(api: Api) -> None:
    external = unique("ext")
    created = await api.post("/users", {"external_user_id": external})
    assert created.status == 201, created.body
    assert created.data["externalUserId"] == external
    again = await api.post("/users", {"externalUserId": external})
    assert (again.status, again.data["id"]) == (200, created.data["id"])


async def test_a_user_is_read_by_id(api: Api) -> None:
    user = await api.user(email=email())
    reply = await api.get(f"/users/{user['id']}")
    assert reply.status == 200, reply.body
    assert reply.data == user


async def test_an_unknown_user_is_not_found(api: Api) -> None:
    details = assert_error(await api.get(f"/users/usr_{'N' * 32}"), 404, "USER_NOT_FOUND")
    assert details == {}


async def test_the_list_filters_on_external_id_and_email(api: Api) -> None:
    shared = email()
    a, b = await api.user(email=shared), await api.user(email=shared)
    await api.user(email=email())
    by_external = await api.get(f"/users?externalUserId={a['externalUserId']}")
    assert by_external.status == 200, by_external.body
    assert [u["id"] for u in by_external.data] == [a["id"]]
    by_email = await api.get(f"/users?email={shared}")
    assert [u["id"] for u in by_email.data] == [b["id"], a["id"]]


async def test_the_list_filters_on_type_and_status(api: Api) -> None:
    shared = email()
    buyer, seller = await api.user(email=shared, type="BUYER"), await api.user(email=shared, type="SELLER")
    sellers = await api.get(f"/users?email={shared}&type=SELLER&status=ACTIVE")
    assert [u["id"] for u in sellers.data] == [seller["id"]]
    buyers = await api.get(f"/users?email={shared}&type=BUYER")
    assert [u["id"] for u in buyers.data] == [buyer["id"]]
    suspended = await api.get(f"/users?email={shared}&status=SUSPENDED")
    assert suspended.data == []


async def test_the_list_pages_newest_first_with_a_cursor(api: Api) -> None:
    shared = email()
    ids = [(await api.user(email=shared))["id"] for _ in range(5)]
    first = await api.get(f"/users?email={shared}&limit=2")
    assert [u["id"] for u in first.data] == [ids[4], ids[3]]
    assert first.body["meta"]["pagination"] == {"limit": 2, "hasMore": True, "nextCursor": ids[3]}
    second = await api.get(f"/users?email={shared}&limit=2&cursor={ids[3]}")
    assert [u["id"] for u in second.data] == [ids[2], ids[1]]
    assert second.body["meta"]["pagination"] == {"limit": 2, "hasMore": True, "nextCursor": ids[1]}
    last = await api.get(f"/users?email={shared}&limit=2&cursor={ids[1]}")
    assert [u["id"] for u in last.data] == [ids[0]]
    assert last.body["meta"]["pagination"] == {"limit": 2, "hasMore": False, "nextCursor": None}


async def test_a_full_last_page_has_no_next_cursor(api: Api) -> None:
    shared = email()
    ids = [(await api.user(email=shared))["id"] for _ in range(2)]
    reply = await api.get(f"/users?email={shared}&limit=2")
    assert [u["id"] for u in reply.data] == [ids[1], ids[0]]
    assert reply.body["meta"]["pagination"] == {"limit": 2, "hasMore": False, "nextCursor": None}


async def test_the_default_page_size_is_twenty(api: Api) -> None:
    reply = await api.get("/users")
    assert reply.status == 200, reply.body
    assert reply.body["meta"]["pagination"]["limit"] == 20
    assert len(reply.data) <= 20


async def test_a_page_size_above_one_hundred_is_clamped(api: Api) -> None:
    reply = await api.get("/users?limit=500")
    assert reply.status == 200, reply.body
    assert reply.body["meta"]["pagination"]["limit"] == 100
    assert len(reply.data) <= 100


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "2.5", ""])
async def test_a_page_size_that_is_not_a_positive_integer_is_refused(api: Api, limit: str) -> None:
    reply = await api.get(f"/users?limit={limit}")
    assert [f["field"] for f in field_errors(reply)] == ["limit"]


@pytest.mark.parametrize("cursor", [f"usr_{'C' * 32}", "garbage"])
async def test_an_unknown_cursor_is_refused(api: Api, cursor: str) -> None:
    reply = await api.get(f"/users?cursor={cursor}")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("cursor", "INVALID_CURSOR")]


async def test_an_unknown_list_filter_is_refused(api: Api) -> None:
    reply = await api.get("/users?colour=blue")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("colour", "UNKNOWN_FIELD")]


async def test_a_list_filter_outside_its_enum_is_refused(api: Api) -> None:
    reply = await api.get("/users?type=buyer")
    [problem] = field_errors(reply)
    assert (problem["field"], problem["code"], problem["allowed"]) == ("type", "INVALID_ENUM",
                                                                       ["BUYER", "SELLER", "BOTH"])


@pytest.mark.parametrize("address", ["not-an-email", "a@b", "two@@example.com", "spaces in@example.com",
                                     f"{'x' * 250}@example.com", 42])
async def test_a_malformed_email_is_refused(api: Api, address: object) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext"), "email": address})
    [problem] = field_errors(reply)
    assert problem["field"] == "email"
    assert problem["code"] in ("INVALID_FORMAT", "TOO_LONG", "INVALID_TYPE")


@pytest.mark.parametrize("kind", ["buyer", "Seller", "ADMIN", "", 1])
async def test_a_user_type_outside_the_enum_is_refused(api: Api, kind: object) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext"), "type": kind})
    [problem] = field_errors(reply)
    assert (problem["field"], problem["code"]) == ("type", "INVALID_ENUM")
    assert problem["allowed"] == ["BUYER", "SELLER", "BOTH"]


@pytest.mark.parametrize(("body", "code"), [
    ({}, "MISSING_REQUIRED_FIELD"), ({"externalUserId": ""}, "MISSING_REQUIRED_FIELD"),
    ({"externalUserId": None}, "MISSING_REQUIRED_FIELD"), ({"externalUserId": "x" * 256}, "TOO_LONG"),
    ({"externalUserId": 12}, "INVALID_TYPE"),
])
async def test_the_external_id_is_a_required_string_of_at_most_255(api: Api, body: dict[str, Any],
                                                                  code: str) -> None:
    reply = await api.post("/users", body)
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("externalUserId", code)]


async def test_metadata_must_be_a_small_object(api: Api) -> None:
    too_big = await api.post("/users", {"externalUserId": unique("ext"), "metadata": {"x": "y" * 9000}})
    assert [(f["field"], f["code"]) for f in field_errors(too_big)] == [("metadata", "TOO_LONG")]
    not_object = await api.post("/users", {"externalUserId": unique("ext"), "metadata": ["a"]})
    assert [(f["field"], f["code"]) for f in field_errors(not_object)] == [("metadata", "INVALID_TYPE")]


async def test_an_empty_body_reports_the_missing_external_id(api: Api) -> None:
    async with api.client.post("/api/v1/users", headers={"Authorization": f"Bearer {api.credential}"}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"]["details"]["fields"][0]["code"] == "MISSING_REQUIRED_FIELD"
