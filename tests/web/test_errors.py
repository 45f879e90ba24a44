"""Bad input gets a clear answer in the error envelope, never a 500 (spec api.md §1.7, errors.md)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.api import Api, Reply, unique

UNKNOWN_KEY = f"ohk_test_key_{'A' * 32}_{'0' * 48}"


def assert_error(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The full error envelope of spec api.md §1.7; returns ``error.details``."""
    assert reply.status == status, reply.body
    assert isinstance(reply.body, dict), reply.body
    assert set(reply.body) == {"error"}, reply.body
    error = reply.error
    assert error["code"] == code
    assert error["statusCode"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    assert reply.headers.get("X-Request-ID")
    return error["details"]


def field_errors(reply: Reply) -> list[dict[str, Any]]:
    details = assert_error(reply, 400, "VALIDATION_ERROR")
    return details["fields"]


async def new_key(api: Api, *scopes: str, **fields: Any) -> dict[str, Any]:
    """A new API key's creation data (``id``, ``key``, ``name`` …), for tests that need its id too."""
    reply = await api.post("/auth/api-keys", {"name": unique("key"), "scopes": list(scopes), **fields})
    assert reply.status == 201, reply.body
    return reply.data


async def raw(api: Api, method: str, path: str, *, data: bytes | str | AsyncIterator[bytes] | None = None,
              headers: dict[str, str] | None = None, authorization: str | None = "master") -> Reply:
    """A request with a hand-made body and headers (``authorization=None`` sends no credential)."""
    sent = dict(headers or {})
    if authorization is not None:
        sent["Authorization"] = f"Bearer {api.credential}" if authorization == "master" else authorization
    async with api.client.request(method, f"/api/v1{path}", data=data, headers=sent) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return Reply(resp.status, body, resp.headers)


@pytest.mark.parametrize("body", ['{"externalUserId": ', "not json at all", "{'single': 'quotes'}", "\xff\xfe"])
async def test_malformed_json_is_a_validation_error_on_the_body(api: Api, body: str) -> None:
    reply = await raw(api, "POST", "/users", data=body.encode("latin-1"),
                      headers={"Content-Type": "application/json"})
    assert field_errors(reply) == [{"field": "body", "code": "INVALID_JSON", "message": "body is not valid JSON"}]


async def test_a_json_array_body_is_refused_as_the_wrong_type(api: Api) -> None:
    reply = await raw(api, "POST", "/users", data=b'["a"]', headers={"Content-Type": "application/json"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("body", "INVALID_TYPE")]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"])
async def test_a_body_that_is_not_json_is_an_unsupported_media_type(api: Api, content_type: str) -> None:
    reply = await raw(api, "POST", "/users", data=b'{"externalUserId": "x"}',
                      headers={"Content-Type": content_type})
    assert_error(reply, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_a_body_over_one_mebibyte_is_too_large(api: Api) -> None:
    padding = "x" * (1024 * 1024)
    body = json.dumps({"externalUserId": unique("big"), "metadata": {"pad": padding}})
    reply = await raw(api, "POST", "/users", data=body.encode(), headers={"Content-Type": "application/json"})
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE")


async def test_a_chunked_body_over_one_mebibyte_is_too_large(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1100):
            yield b"x" * 1024

    reply = await raw(api, "POST", "/users", data=chunks(), headers={"Content-Type": "application/json"})
    assert_error(reply, 413, "PAYLOAD_TOO_LARGE")


async def test_a_body_without_a_content_type_is_an_unsupported_media_type(api: Api) -> None:
    reply = await raw(api, "POST", "/users", data=b'{"externalUserId": "x"}')
    assert_error(reply, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_a_body_just_under_the_limit_reaches_validation(api: Api) -> None:
    body = json.dumps({"externalUserId": unique("big"), "metadata": {"pad": "x" * (1024 * 1000)}})
    reply = await raw(api, "POST", "/users", data=body.encode(), headers={"Content-Type": "application/json"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("metadata", "TOO_LONG")]


async def test_unknown_body_fields_are_refused_by_name(api: Api) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext"), "nickname": "bob", "role": "x"})
    found = {(f["field"], f["code"]) for f in field_errors(reply)}
    assert found == {("nickname", "UNKNOWN_FIELD"), ("role", "UNKNOWN_FIELD")}


@pytest.mark.parametrize(("amount", "code"), [
    ("10.005", "INVALID_AMOUNT_FORMAT"),
    ("100", "INVALID_AMOUNT_FORMAT"),
    ("100.0", "INVALID_AMOUNT_FORMAT"),
    ("100.000", "INVALID_AMOUNT_FORMAT"),
    ("-50.00", "INVALID_AMOUNT_FORMAT"),
    ("$100.00", "INVALID_AMOUNT_FORMAT"),
    ("1e2", "INVALID_AMOUNT_FORMAT"),
    ("007.00", "INVALID_AMOUNT_FORMAT"),
    (" 10.00", "INVALID_AMOUNT_FORMAT"),
    ("10000000000000.00", "INVALID_AMOUNT_FORMAT"),
    ("", "MISSING_REQUIRED_FIELD"),
    (100.00, "INVALID_TYPE"),
    (100, "INVALID_TYPE"),
    ("0.00", "INVALID_AMOUNT"),
])
async def test_amounts_outside_the_two_decimal_format_are_refused(api: Api, amount: Any, code: str) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": amount})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("amount", code)]
    assert (await api.balance(user["id"]))["available"] == "0.00"


async def test_the_largest_amount_the_format_allows_is_accepted(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "9999999999999.99"})
    assert reply.status == 200, reply.body
    assert reply.data["balance"]["available"] == "9999999999999.99"


@pytest.mark.parametrize("user_id", ["ord_abc123", "usr_", "usr_has space", "nonsense", f"usr_{'a' * 65}"])
async def test_a_path_id_with_the_wrong_prefix_is_not_found(api: Api, user_id: str) -> None:
    reply = await api.get(f"/users/{user_id}")
    assert_error(reply, 404, "USER_NOT_FOUND")


async def test_a_body_id_with_the_wrong_prefix_is_a_validation_error(api: Api) -> None:
    buyer = await api.funded_user("10.00")
    await api.post(f"/users/{buyer['id']}/balance/reserve", {"amount": "5.00", "orderId": "ord-1"})
    reply = await api.post(f"/users/{buyer['id']}/balance/release",
                           {"amount": "5.00", "orderId": "ord-1", "sellerId": "ord_notauser"})
    [problem] = field_errors(reply)
    assert (problem["field"], problem["code"]) == ("sellerId", "INVALID_ID_PREFIX")
    assert (await api.balance(buyer["id"]))["reserved"] == "5.00"


@pytest.mark.parametrize("key", ["not-a-uuid", "12345", "0328ddba-f26a-11f1-a716-02fc00000001",  # a version-1 UUID
                                 "ff2cc49c-adfa-4be5-b94d-6fd103080ce9x"])
async def test_a_malformed_idempotency_key_is_refused_naming_the_header(api: Api, key: str) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext")}, headers={"Idempotency-Key": key})
    details = assert_error(reply, 400, "VALIDATION_ERROR")
    assert details["header"] == "Idempotency-Key"


async def test_a_request_without_authorization_is_unauthorized(api: Api) -> None:
    reply = await raw(api, "GET", "/users", authorization=None)
    assert_error(reply, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token test-master-key-0123456789", "Bearer", "Bearer  ",
                                    "test-master-key-0123456789"])
async def test_a_credential_not_sent_as_bearer_is_unauthorized(api: Api, header: str) -> None:
    reply = await raw(api, "GET", "/users", authorization=header)
    assert_error(reply, 401, "UNAUTHORIZED")


async def test_the_bearer_scheme_name_is_case_insensitive(api: Api) -> None:
    reply = await raw(api, "GET", "/auth/me", authorization=f"bearer {api.credential}")
    assert reply.status == 200, reply.body
    assert reply.body["data"]["type"] == "master"


@pytest.mark.parametrize("credential", [UNKNOWN_KEY, "some-random-string", "ohk_tok_forged.signature",
                                        UNKNOWN_KEY.replace("ohk_test_", "ohk_live_")])
async def test_an_unknown_credential_is_an_invalid_api_key(api: Api, credential: str) -> None:
    reply = await raw(api, "GET", "/users", authorization=f"Bearer {credential}")
    assert_error(reply, 401, "INVALID_API_KEY")


async def test_a_revoked_key_is_an_invalid_api_key(api: Api) -> None:
    key = await new_key(api, "read")
    assert (await api.delete(f"/auth/api-keys/{key['id']}")).status == 200
    assert_error(await api.as_(key["key"]).get("/users"), 401, "INVALID_API_KEY")


async def test_a_key_with_the_right_id_but_the_wrong_secret_is_an_invalid_api_key(api: Api) -> None:
    key = (await new_key(api, "read"))["key"]
    forged = key[:-4] + ("0000" if not key.endswith("0000") else "1111")
    assert_error(await api.as_(forged).get("/users"), 401, "INVALID_API_KEY")


async def test_a_key_without_the_scope_is_told_which_scope_it_needs(api: Api) -> None:
    key = (await new_key(api, "read"))["key"]
    reply = await api.as_(key).post("/users", {"externalUserId": unique("ext")})
    details = assert_error(reply, 403, "INSUFFICIENT_SCOPE")
    assert details == {"requiredScope": "write", "currentScopes": ["read"]}


@pytest.mark.parametrize("path", ["/nothing-here", "/users/usr_x/nothing", "/orderz"])
async def test_an_unknown_route_is_not_found(api: Api, path: str) -> None:
    assert_error(await api.get(path), 404, "NOT_FOUND")


async def test_a_path_outside_the_api_is_not_found_in_the_envelope(api: Api) -> None:
    async with api.client.get("/favicon.ico") as resp:
        assert resp.status == 404
        body = await resp.json()
        assert body["error"]["code"] == "NOT_FOUND"
        assert resp.headers.get("X-Request-ID")


@pytest.mark.parametrize(("method", "path", "allowed"), [("DELETE", "/users", "GET"), ("PUT", "/health", "GET"),
                                                          ("POST", "/config", "GET"),
                                                          ("PATCH", "/users/usr_abc", "GET"),
                                                          ("GET", "/admin/maintenance/enable", "POST")])
async def test_a_wrong_method_on_a_known_route_is_not_allowed(api: Api, method: str, path: str,
                                                              allowed: str) -> None:
    reply = await api.call(method, path)
    assert_error(reply, 405, "METHOD_NOT_ALLOWED")
    assert allowed in reply.headers["Allow"].split(", ")
    assert method not in reply.headers["Allow"].split(", ")


@pytest.mark.parametrize("currency", ["EUR", "usd", "USDC", ""])
async def test_a_currency_other_than_usd_is_refused(api: Api, currency: str) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00", "currency": currency})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("currency", "INVALID_CURRENCY")]


async def test_usd_is_accepted_explicitly(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00", "currency": "USD"})
    assert reply.status == 200, reply.body


async def test_a_field_and_its_alias_with_different_values_conflict(api: Api) -> None:
    reply = await api.post("/users", {"externalUserId": unique("a"), "external_user_id": unique("b")})
    [problem] = field_errors(reply)
    assert problem["code"] == "ALIAS_CONFLICT"
    assert problem["field"] in ("externalUserId", "external_user_id")


async def test_a_field_and_its_alias_with_the_same_value_are_accepted(api: Api) -> None:
    external = unique("same")
    reply = await api.post("/users", {"externalUserId": external, "external_user_id": external})
    assert reply.status == 201, reply.body
    assert reply.data["externalUserId"] == external


async def test_every_failing_field_is_listed(api: Api) -> None:
    reply = await api.post("/users", {"email": "nope", "type": "buyer"})
    found = {(f["field"], f["code"]) for f in field_errors(reply)}
    assert found == {("externalUserId", "MISSING_REQUIRED_FIELD"), ("email", "INVALID_FORMAT"),
                     ("type", "INVALID_ENUM")}


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"externalUserId": "x", "metadata": {"n": NaN}}',
                                  b'{"externalUserId": "x", "metadata": {"n": -Infinity}}'])
async def test_bodies_json_does_not_allow_are_invalid_json(api: Api, body: bytes) -> None:
    reply = await raw(api, "POST", "/users", data=body, headers={"Content-Type": "application/json"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("body", "INVALID_JSON")]


@pytest.mark.parametrize(("body", "field"), [
    ({"externalUserId": "a\u0000b"}, "externalUserId"),
    ({"externalUserId": "a\ud800b"}, "externalUserId"),
    ({"externalUserId": "ok", "email": "a\u0000@example.com"}, "email"),
    ({"externalUserId": "ok", "metadata": {"tags": ["fine", "nul\u0000"]}}, "metadata.tags[1]"),
    ({"externalUserId": "ok", "metadata": {"bad\u0000key": 1}}, "metadata"),
])
async def test_text_the_database_cannot_store_is_refused_by_field(api: Api, body: dict[str, Any],
                                                                  field: str) -> None:
    data = json.dumps(body).encode()  # ensure_ascii escapes NUL and lone surrogates as \\u sequences
    reply = await raw(api, "POST", "/users", data=data, headers={"Content-Type": "application/json"})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [(field, "INVALID_FORMAT")]


@pytest.mark.parametrize(("query", "field"), [("email=%00", "email"), ("cursor=usr_%00", "cursor"),
                                              ("externalUserId=a%00b", "externalUserId")])
async def test_a_nul_character_in_the_query_is_refused(api: Api, query: str, field: str) -> None:
    reply = await api.get(f"/users?{query}")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [(field, "INVALID_FORMAT")]


async def test_a_nul_character_in_a_key_list_filter_is_refused(api: Api) -> None:
    reply = await api.get("/auth/api-keys?userId=owner%00")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("userId", "INVALID_FORMAT")]


@pytest.mark.parametrize(("limit", "expected"), [("9" * 5000, 100), ("0000000000000000000007", 7), ("100", 100)])
async def test_any_large_or_padded_page_size_is_read_and_clamped(api: Api, limit: str, expected: int) -> None:
    reply = await api.get(f"/users?limit={limit}")
    assert reply.status == 200, reply.body
    assert reply.body["meta"]["pagination"]["limit"] == expected


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A1", "+5", "0x10", "000"])
async def test_a_page_size_in_other_digits_or_notations_is_refused(api: Api, limit: str) -> None:
    reply = await api.get(f"/users?limit={limit}")
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("limit", "INVALID_FORMAT")]
