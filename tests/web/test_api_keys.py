"""API keys, short-lived tokens, scopes and the current credential (spec api.md §1.9, §2.1, §4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.api import Api, unique
from tests.web.test_errors import assert_error, field_errors, new_key

KEY_SHAPE = re.compile(r"ohk_test_(key_[A-Za-z0-9]{32})_[0-9a-f]{48}")
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def parse_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


async def test_a_key_created_with_the_master_key_shows_its_secret_once(api: Api) -> None:
    reply = await api.post("/auth/api-keys", {"name": "My Marketplace", "scopes": ["read", "write"],
                                              "userId": "owner-42"})
    assert reply.status == 201, reply.body
    key = reply.data
    match = KEY_SHAPE.fullmatch(key["key"])
    assert match is not None, key["key"]
    assert key["id"] == match.group(1)
    assert key["key"].startswith("ohk_test_key_")
    assert key["maskedKey"] == f"{key['key'][:13]}…{key['key'][-4:]}"
    assert key["maskedKey"].startswith("ohk_test_key_")
    assert (key["name"], key["scopes"], key["userId"], key["status"]) == (
        "My Marketplace", ["read", "write"], "owner-42", "ACTIVE")
    assert key["lastUsedAt"] is None
    assert key["revokedAt"] is None
    assert ISO_MS.fullmatch(key["createdAt"])


async def test_the_secret_never_appears_in_the_list(api: Api) -> None:
    owner = unique("owner")
    created = await new_key(api, "read", userId=owner)
    reply = await api.get(f"/auth/api-keys?userId={owner}")
    assert reply.status == 200, reply.body
    [listed] = reply.data
    assert "key" not in listed
    assert listed["id"] == created["id"]
    assert listed["maskedKey"] == created["maskedKey"]
    assert created["key"] not in str(reply.body)


async def test_keys_are_listed_newest_first_page_by_page(api: Api) -> None:
    owner = unique("owner")
    ids = [(await new_key(api, "read", userId=owner))["id"] for _ in range(3)]
    first = await api.get(f"/auth/api-keys?userId={owner}&limit=2")
    assert first.status == 200, first.body
    assert [k["id"] for k in first.data] == [ids[2], ids[1]]
    assert first.body["meta"]["pagination"] == {"limit": 2, "hasMore": True, "nextCursor": ids[1]}
    second = await api.get(f"/auth/api-keys?userId={owner}&limit=2&cursor={ids[1]}")
    assert [k["id"] for k in second.data] == [ids[0]]
    assert second.body["meta"]["pagination"] == {"limit": 2, "hasMore": False, "nextCursor": None}


async def test_the_list_filters_on_status(api: Api) -> None:
    owner = unique("owner")
    kept, revoked = await new_key(api, "read", userId=owner), await new_key(api, "read", userId=owner)
    await api.delete(f"/auth/api-keys/{revoked['id']}")
    active = await api.get(f"/auth/api-keys?userId={owner}&status=ACTIVE")
    gone = await api.get(f"/auth/api-keys?userId={owner}&status=REVOKED")
    assert [k["id"] for k in active.data] == [kept["id"]]
    assert [k["id"] for k in gone.data] == [revoked["id"]]


async def test_an_unknown_list_cursor_is_refused(api: Api) -> None:
    reply = await api.get(f"/auth/api-keys?cursor=key_{'Z' * 32}")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("cursor", "INVALID_CURSOR")]


async def test_revoking_a_key_marks_it_revoked_and_revoking_again_changes_nothing(api: Api) -> None:
    key = await new_key(api, "read")
    first = await api.delete(f"/auth/api-keys/{key['id']}")
    assert first.status == 200, first.body
    assert first.data["status"] == "REVOKED"
    assert ISO_MS.fullmatch(first.data["revokedAt"])
    assert "key" not in first.data
    again = await api.delete(f"/auth/api-keys/{key['id']}")
    assert again.status == 200, again.body
    assert again.data == first.data


async def test_a_revoked_key_is_refused_immediately(api: Api) -> None:
    key = await new_key(api, "read")
    assert (await api.as_(key["key"]).get("/auth/me")).status == 200  # now cached as valid
    assert (await api.delete(f"/auth/api-keys/{key['id']}")).status == 200
    assert_error(await api.as_(key["key"]).get("/auth/me"), 401, "INVALID_API_KEY")


async def test_a_key_may_revoke_itself(api: Api) -> None:
    key = await new_key(api, "support")
    reply = await api.as_(key["key"]).delete(f"/auth/api-keys/{key['id']}")
    assert reply.status == 200, reply.body
    assert reply.data["status"] == "REVOKED"
    assert_error(await api.as_(key["key"]).get("/auth/me"), 401, "INVALID_API_KEY")


async def test_revoking_with_a_body_field_is_refused_and_keeps_the_key(api: Api) -> None:
    key = await new_key(api, "read")
    reply = await api.delete(f"/auth/api-keys/{key['id']}", json={"reason": "leaked"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("reason", "UNKNOWN_FIELD")]
    assert (await api.as_(key["key"]).get("/auth/me")).status == 200


async def test_revoking_an_unknown_key_is_not_found(api: Api) -> None:
    assert_error(await api.delete(f"/auth/api-keys/key_{'Q' * 32}"), 404, "API_KEY_NOT_FOUND")
    assert_error(await api.delete("/auth/api-keys/usr_notakey"), 404, "API_KEY_NOT_FOUND")


async def test_a_token_authenticates_as_its_key_until_it_expires(api: Api) -> None:
    key = await new_key(api, "read", "write")
    before = datetime.now(UTC)
    reply = await api.post(f"/auth/api-keys/{key['id']}/token", {"ttl": 600})
    assert reply.status == 201, reply.body
    token = reply.data
    assert token["token"].startswith("ohk_tok_")
    assert (token["keyId"], token["scopes"]) == (key["id"], ["read", "write"])
    expires = parse_time(token["expiresAt"])
    assert before + timedelta(seconds=598) <= expires <= datetime.now(UTC) + timedelta(seconds=601)
    me = await api.as_(token["token"]).get("/auth/me")
    assert me.status == 200, me.body
    assert me.data == {"type": "token", "apiKeyId": key["id"], "apiKeyName": key["name"],
                       "scopes": ["read", "write"], "expiresAt": token["expiresAt"]}


async def test_a_token_defaults_to_one_hour(api: Api) -> None:
    key = await new_key(api, "read")
    reply = await api.post(f"/auth/api-keys/{key['id']}/token")
    assert reply.status == 201, reply.body
    left = parse_time(reply.data["expiresAt"]) - datetime.now(UTC)
    assert timedelta(seconds=3590) <= left <= timedelta(seconds=3601)


async def test_a_key_may_mint_a_token_for_itself_with_a_narrower_scope(api: Api) -> None:
    key = await new_key(api, "read", "write")
    reply = await api.as_(key["key"]).post(f"/auth/api-keys/{key['id']}/token", {"scopes": ["read"]})
    assert reply.status == 201, reply.body
    assert reply.data["scopes"] == ["read"]
    narrow = api.as_(reply.data["token"])
    assert (await narrow.get("/users?limit=1")).status == 200
    refused = await narrow.post("/users", {"externalUserId": unique("ext")})
    assert assert_error(refused, 403, "INSUFFICIENT_SCOPE") == {"requiredScope": "write", "currentScopes": ["read"]}


async def test_a_key_may_not_mint_a_token_for_another_key(api: Api) -> None:
    mine, other = await new_key(api, "read", "write"), await new_key(api, "read")
    reply = await api.as_(mine["key"]).post(f"/auth/api-keys/{other['id']}/token")
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"


async def test_a_token_of_a_revoked_key_is_refused(api: Api) -> None:
    key = await new_key(api, "read")
    token = (await api.post(f"/auth/api-keys/{key['id']}/token", {"ttl": 600})).data["token"]
    assert (await api.as_(token).get("/auth/me")).status == 200
    assert (await api.delete(f"/auth/api-keys/{key['id']}")).status == 200
    assert_error(await api.as_(token).get("/auth/me"), 401, "INVALID_API_KEY")


async def test_no_token_is_minted_for_a_revoked_key(api: Api) -> None:
    key = await new_key(api, "read")
    await api.delete(f"/auth/api-keys/{key['id']}")
    details = assert_error(await api.post(f"/auth/api-keys/{key['id']}/token"), 409, "INVALID_STATE_TRANSITION")
    assert (details["id"], details["currentState"]) == (key["id"], "REVOKED")


async def test_no_token_is_minted_for_an_unknown_key(api: Api) -> None:
    assert_error(await api.post(f"/auth/api-keys/key_{'R' * 32}/token"), 404, "API_KEY_NOT_FOUND")


async def test_a_tampered_token_is_refused(api: Api) -> None:
    key = await new_key(api, "read")
    token = (await api.post(f"/auth/api-keys/{key['id']}/token")).data["token"]
    body, _, signature = token.partition(".")
    tampered = f"{body}.{signature[:-2]}{'AA' if not signature.endswith('AA') else 'BB'}"
    assert_error(await api.as_(tampered).get("/auth/me"), 401, "INVALID_API_KEY")


@pytest.mark.parametrize("ttl", [59, 86401, 0, -5, "600", 60.5, True])
async def test_a_token_ttl_out_of_range_is_refused(api: Api, ttl: object) -> None:
    key = await new_key(api, "read")
    reply = await api.post(f"/auth/api-keys/{key['id']}/token", {"ttl": ttl})
    assert [f["field"] for f in field_errors(reply)] == ["ttl"]


@pytest.mark.parametrize("ttl", [60, 86400])
async def test_the_ttl_bounds_are_inclusive(api: Api, ttl: int) -> None:
    key = await new_key(api, "read")
    reply = await api.post(f"/auth/api-keys/{key['id']}/token", {"ttl": ttl})
    assert reply.status == 201, reply.body


async def test_a_token_cannot_carry_a_scope_its_key_lacks(api: Api) -> None:
    key = await new_key(api, "read")
    reply = await api.post(f"/auth/api-keys/{key['id']}/token", {"scopes": ["read", "write"]})
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE") == {"requiredScope": "write", "currentScopes": ["read"]}


async def test_a_read_key_cannot_create_users(api: Api) -> None:
    key = await new_key(api, "read")
    reply = await api.as_(key["key"]).post("/users", {"externalUserId": unique("ext")})
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE") == {"requiredScope": "write", "currentScopes": ["read"]}


async def test_support_does_not_imply_read(api: Api) -> None:
    key = await new_key(api, "support")
    reply = await api.as_(key["key"]).get("/users")
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE") == {"requiredScope": "read",
                                                              "currentScopes": ["support"]}


async def test_write_does_not_imply_read(api: Api) -> None:
    key = await new_key(api, "write")
    user = (await api.as_(key["key"]).post("/users", {"externalUserId": unique("ext")})).data
    reply = await api.as_(key["key"]).get(f"/users/{user['id']}")
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "read"


async def test_a_star_key_may_do_everything(api: Api) -> None:
    key = api.as_((await new_key(api, "*"))["key"])
    created = await key.post("/users", {"externalUserId": unique("ext")})
    assert created.status == 201, created.body
    assert (await key.get(f"/users/{created.data['id']}")).status == 200
    assert (await key.get("/auth/api-keys?limit=1")).status == 200


async def test_a_support_key_may_grant_only_scopes_it_holds(api: Api) -> None:
    support = api.as_((await new_key(api, "support"))["key"])
    granted = await support.post("/auth/api-keys", {"name": unique("k"), "scopes": ["support"]})
    assert granted.status == 201, granted.body
    for scopes, missing in ((["*"], "*"), (["support", "read"], "read")):
        refused = await support.post("/auth/api-keys", {"name": unique("k"), "scopes": scopes})
        details = assert_error(refused, 403, "INSUFFICIENT_SCOPE")
        assert details == {"requiredScope": missing, "currentScopes": ["support"]}


async def test_listing_and_revoking_keys_needs_support(api: Api) -> None:
    target = await new_key(api, "read")
    reader = api.as_((await new_key(api, "read", "write"))["key"])
    assert assert_error(await reader.get("/auth/api-keys"), 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"
    refused = await reader.delete(f"/auth/api-keys/{target['id']}")
    assert assert_error(refused, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"
    assert (await api.as_(target["key"]).get("/auth/me")).status == 200


async def test_an_owner_label_is_optional_and_null_when_absent(api: Api) -> None:
    key = await new_key(api, "read")
    assert key["userId"] is None


async def test_a_key_without_support_cannot_create_keys(api: Api) -> None:
    writer = api.as_((await new_key(api, "read", "write"))["key"])
    reply = await writer.post("/auth/api-keys", {"name": unique("k"), "scopes": ["read"]})
    assert assert_error(reply, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"


@pytest.mark.parametrize(("scopes", "code"), [
    (["admin"], "INVALID_SCOPE"), (["read", "orders"], "INVALID_SCOPE"), (["READ"], "INVALID_SCOPE"),
    ([], "TOO_SHORT"), ("read", "INVALID_TYPE"), (["read", "read"], "INVALID_FORMAT"),
])
async def test_bad_scope_lists_are_refused(api: Api, scopes: object, code: str) -> None:
    reply = await api.post("/auth/api-keys", {"name": unique("k"), "scopes": scopes})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("scopes", code)]


@pytest.mark.parametrize(("name", "code"), [("", "MISSING_REQUIRED_FIELD"), ("n" * 101, "TOO_LONG")])
async def test_a_key_name_must_be_one_to_a_hundred_characters(api: Api, name: str, code: str) -> None:
    reply = await api.post("/auth/api-keys", {"name": name, "scopes": ["read"]})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("name", code)]


async def test_me_describes_the_master_key(api: Api) -> None:
    reply = await api.get("/auth/me")
    assert reply.status == 200, reply.body
    assert reply.data == {"type": "master", "apiKeyId": "master", "apiKeyName": "master", "scopes": ["*"],
                          "expiresAt": None}


async def test_me_describes_an_api_key_whatever_its_scope(api: Api) -> None:
    key = await new_key(api, "support")
    reply = await api.as_(key["key"]).get("/auth/me")
    assert reply.status == 200, reply.body
    assert reply.data == {"type": "api_key", "apiKeyId": key["id"], "apiKeyName": key["name"],
                          "scopes": ["support"], "expiresAt": None}


async def test_using_a_key_records_when_it_was_last_used(api: Api) -> None:
    owner = unique("owner")
    key = await new_key(api, "read", userId=owner)
    await api.as_(key["key"]).get("/auth/me")
    [listed] = (await api.get(f"/auth/api-keys?userId={owner}")).data
    assert listed["lastUsedAt"] is not None
    assert parse_time(listed["lastUsedAt"]) >= parse_time(listed["createdAt"])
