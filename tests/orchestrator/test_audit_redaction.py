"""The redaction rules of spec api.md §15, one by one (and the value scrubbing added for defence in depth)."""

from __future__ import annotations

import pytest

from orchestrator.audit import MASK, redact

SEED = "SBZVMB74Z76QZ3ZOY7UTDFYKMEGKW5XFJEB6PFKBF4UYSSWHG4EDH7PY"


@pytest.mark.parametrize("name", ["apiKey", "secret", "password", "airtmApiKey", "hashedKey", "salt", "token"])
def test_the_named_secret_fields_are_masked_whole(name: str) -> None:
    assert redact({name: "hunter2-value"}) == {name: MASK}


@pytest.mark.parametrize("name", ["APIKEY", "Secret", "PASSWORD", "Token", "SALT"])
def test_names_compare_case_insensitively(name: str) -> None:
    assert redact({name: "x"}) == {name: MASK}


@pytest.mark.parametrize("name", ["refreshToken", "tokenType", "clientSecretValue", "oldPassword", "passwordHash"])
def test_fields_containing_token_secret_or_password_are_masked(name: str) -> None:
    assert redact({name: "abc"}) == {name: MASK}


@pytest.mark.parametrize("name", ["signingKey", "privateKey", "webhookKey", "encryptionKEY", "key"])
def test_fields_ending_in_key_are_masked(name: str) -> None:
    assert redact({name: "abc"}) == {name: MASK}


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("email", "jane.doe@example.com", "j***@example.com"),
    ("airtmEmail", "Bob@mail.example.org", "B***@mail.example.org"),
    ("contactEMAIL", "x@y.io", "x***@y.io"),
])
def test_email_values_keep_their_first_character_and_domain(name: str, value: str, shown: str) -> None:
    assert redact({name: value}) == {name: shown}


def test_an_email_field_without_an_address_is_masked() -> None:
    assert redact({"email": "not-an-address"}) == {"email": MASK}


@pytest.mark.parametrize(("name", "value", "shown"), [
    ("accountNumber", "DE89 3704 0044 0532 0130 00", "****3000"),
    ("bankAccount", "12-3456-7890", "****7890"),
    ("routingNumber", "021000021", "****0021"),
    ("account", "acct 991234", "****1234"),
])
def test_account_bank_and_number_fields_keep_their_last_four_digits(name: str, value: str, shown: str) -> None:
    assert redact({name: value}) == {name: shown}


def test_an_account_field_with_fewer_than_four_digits_is_masked() -> None:
    assert redact({"account": "abc12"}) == {"account": MASK}


@pytest.mark.parametrize(("name", "value"), [
    ("amount", "12.50"), ("grossAmount", "80.00"), ("id", "ord_abc"), ("userId", "usr_x"),
    ("accountId", "acc_12345678"), ("status", "ACTIVE"),
    ("publicKey", "GCFXHS4GXL6BVUCXBWXGTITROWLVYXQKQLF4YH5O5JT3YZXCYPAFBJZB"),
    ("idempotencyKey", "0f6c1b5e-2b8a-4b8e-9a56-2f1f4cf3a1d0"),
])
def test_amounts_ids_statuses_public_keys_and_idempotency_keys_are_never_redacted(name: str, value: str) -> None:
    assert redact({name: value}) == {name: value}


def test_nested_objects_and_lists_are_redacted_field_by_field() -> None:
    before = {"order": {"amount": "5.00", "buyer": {"email": "ann@shop.test", "password": "p"}},
              "items": [{"token": "t1", "title": "Logo"}, {"apiKey": "k"}]}
    assert redact(before) == {"order": {"amount": "5.00", "buyer": {"email": "a***@shop.test", "password": MASK}},
                              "items": [{"token": MASK, "title": "Logo"}, {"apiKey": MASK}]}


def test_an_object_under_a_secret_name_is_masked_whole() -> None:
    assert redact({"secret": {"seed": SEED, "note": "x"}, "credentials": {"apiKey": "k"}}) == {
        "secret": MASK, "credentials": {"apiKey": MASK}}


def test_a_wallet_secret_or_an_api_key_in_any_field_is_masked() -> None:
    assert redact({"note": f"seed {SEED} leaked", "description": "key ohk_test_AbC123xyz_Q used"}) == {
        "note": f"seed {MASK} leaked", "description": f"key {MASK} used"}


def test_a_full_email_in_a_free_text_field_is_shortened() -> None:
    assert redact({"description": "ask jane.doe@example.com"}) == {"description": "ask j***@example.com"}


def test_numbers_booleans_and_null_pass_unchanged() -> None:
    assert redact({"attempts": 3, "funded": True, "fee": None, "ratio": 0.5}) == {
        "attempts": 3, "funded": True, "fee": None, "ratio": 0.5}


def test_the_input_is_not_modified() -> None:
    payload = {"password": "p", "nested": {"token": "t"}}
    redact(payload)
    assert payload == {"password": "p", "nested": {"token": "t"}}


@pytest.mark.parametrize("name", ["keyHash", "signature", "Authorization"])
def test_our_own_key_hashes_and_webhook_signatures_are_masked_too(name: str) -> None:
    assert redact({name: "v1,abc"}) == {name: MASK}
