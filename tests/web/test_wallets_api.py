"""Wallet routes read live from the ledger (spec api.md §2.4, §7) and the book-versus-ledger checks (§6.2, §6.3).

No monitor runs in this module, so USDC paid to a wallet on the ledger stays out of the book: that is how the
discrepancy tests make the two disagree. Administrative credits count through the adjustment account
(DESIGN decision 7): the book should equal the ledger USDC plus the user's net administrative postings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from sqlalchemy import Engine

from orchestrator.settings import Settings
from tests import builders
from tests.api import Api
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.sandbox import SandboxControl
from tests.web.test_errors import assert_error, new_key
from tests.web.test_users import ISO_MS
from web.app import create_app

UNKNOWN_USER = f"usr_{'U' * 32}"


async def active_user(api: Api, engine: Engine) -> tuple[str, str]:
    """A new user whose wallet the chain steps activated: (user id, wallet public key)."""
    user = await api.user()
    wallet = await wallet_status(engine, user["id"])
    return user["id"], wallet["public_key"]


def horizon_account(ledger: SandboxControl, public_key: str) -> dict[str, Any]:
    response = ledger.http.get(f"{ledger.horizon_url}/accounts/{public_key}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def native_balance(account: dict[str, Any]) -> str:
    return next(b["balance"] for b in account["balances"] if b["asset_type"] == "native")


def break_horizon(ledger: SandboxControl, public_key: str, path: str = "", **fault: Any) -> None:
    """Make Horizon fail the next read of this one account (other tests' accounts are untouched)."""
    rule = {"action": "status", "params": {"status": 503}, "times": 1, **fault}
    ledger.add_fault(service="horizon", method="GET", path=f"/accounts/{public_key}{path}", **rule)


async def test_a_new_users_wallet_shows_its_key_and_live_ledger_balances(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user_id, public_key = await active_user(api, engine)
    reply = await api.get(f"/users/{user_id}/wallet")
    assert reply.status == 200, reply.body
    xlm = native_balance(horizon_account(ledger, public_key))
    assert {k: v for k, v in reply.data.items() if k != "createdAt"} == {
        "publicKey": public_key, "type": "INVISIBLE", "provider": "STELLAR", "isActive": True, "isPrimary": True,
        "balance": {"usdc": "0.0000000", "xlm": xlm}}
    assert len(xlm.split(".")[1]) == 7
    assert ISO_MS.fullmatch(reply.data["createdAt"])


async def test_usdc_paid_on_the_ledger_shows_in_the_wallet_to_the_seventh_decimal(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user_id, public_key = await active_user(api, engine)
    ledger.pay("issuer", public_key, "12.3456789")
    reply = await api.get(f"/users/{user_id}/wallet")
    assert reply.status == 200, reply.body
    assert reply.data["balance"]["usdc"] == "12.3456789"


async def test_a_wallet_not_yet_on_the_ledger_reads_zero_and_is_not_active(
        api: Api, engine: Engine, settings: Settings) -> None:
    user_id = builders.user(engine, settings=settings)  # sealed wallet, activation never sent
    reply = await api.get(f"/users/{user_id}/wallet")
    assert reply.status == 200, reply.body
    assert reply.data["isActive"] is False
    assert reply.data["balance"] == {"usdc": "0.0000000", "xlm": "0.0000000"}
    assert_error(await api.get(f"/users/{user_id}/wallet/deposit"), 404, "WALLET_NOT_FOUND")


async def test_deposit_instructions_name_the_wallet_and_the_configured_usdc(
        api: Api, engine: Engine, settings: Settings) -> None:
    user_id, public_key = await active_user(api, engine)
    reply = await api.get(f"/users/{user_id}/wallet/deposit")
    assert reply.status == 200, reply.body
    assert reply.data == {
        "provider": "crypto", "method": "stellar_address", "address": public_key,
        "asset": {"code": settings.usdc_asset_code, "issuer": settings.usdc_issuer}, "network": "sandbox",
        "instructions": "Send USDC to this Stellar address. Deposits are detected automatically within seconds."}


async def test_deposit_instructions_follow_the_users_backing_whatever_the_mode(
        api: Api, engine: Engine, aiohttp_client: Any, settings: Settings, master_key: str) -> None:
    # DESIGN decision 26: money enters the way the user is backed, whichever PAYMENT_PROVIDER is in force
    airtm_mode = dataclasses.replace(settings, payment_provider="airtm")
    airtm = Api(await aiohttp_client(create_app(airtm_mode)), master_key)
    backed_by_airtm = builders.user(engine, settings=airtm_mode)  # created while AirTM mode was in force
    assert (await airtm.get(f"/users/{backed_by_airtm}")).data["backing"] == "AIRTM"
    reply = await airtm.get(f"/users/{backed_by_airtm}/wallet/deposit")
    assert reply.status == 200, reply.body
    assert {k: v for k, v in reply.data.items() if k != "instructions"} == {
        "provider": "airtm", "method": "redirect_uri", "address": None, "asset": None, "network": None}
    assert "POST /topups" in reply.data["instructions"]
    user_id, public_key = await active_user(api, engine)  # backed by its wallet, asked in AirTM mode
    reply = await airtm.get(f"/users/{user_id}/wallet/deposit")
    assert reply.status == 200, reply.body
    assert (reply.data["provider"], reply.data["address"]) == ("crypto", public_key)


async def test_wallet_transactions_list_the_latest_payment_first(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    user_id, public_key = await active_user(api, engine)
    paid = ledger.pay("issuer", public_key, "12.3456789")
    reply = await api.get(f"/users/{user_id}/wallet/transactions")
    assert reply.status == 200, reply.body
    latest, *older = reply.data
    assert {k: v for k, v in latest.items() if k not in ("id", "createdAt")} == {
        "type": "payment", "from": settings.usdc_issuer, "to": public_key, "amount": "12.3456789",
        "asset": f"USDC:{settings.usdc_issuer}", "hash": paid["hash"], "successful": True}
    assert latest["id"] == str(paid["operationId"])
    assert ISO_MS.fullmatch(latest["createdAt"])
    funding = ledger.http.get(f"{ledger.horizon_url}/accounts/{public_key}/payments", timeout=10).json()
    first = funding["_embedded"]["records"][0]
    assert older[-1] == {"id": first["id"], "type": "create_account", "from": first["funder"], "to": public_key,
                         "amount": first["starting_balance"], "asset": "XLM", "hash": first["transaction_hash"],
                         "createdAt": older[-1]["createdAt"], "successful": True}
    limited = await api.get(f"/users/{user_id}/wallet/transactions?limit=1")
    assert [t["hash"] for t in limited.data] == [paid["hash"]]


async def test_a_bad_transactions_limit_is_a_validation_error(api: Api, engine: Engine) -> None:
    user_id, _ = await active_user(api, engine)
    for query in ("limit=0", "limit=ten", "cursor=abc"):
        assert_error(await api.get(f"/users/{user_id}/wallet/transactions?{query}"), 400, "VALIDATION_ERROR")


@pytest.mark.parametrize("route", ["wallet", "wallet/deposit", "wallet/transactions"])
async def test_wallet_routes_answer_not_found_for_unknown_users_and_users_without_a_wallet(
        api: Api, engine: Engine, route: str) -> None:
    assert_error(await api.get(f"/users/{UNKNOWN_USER}/{route}"), 404, "USER_NOT_FOUND")
    assert_error(await api.get(f"/users/ord_{'U' * 32}/{route}"), 404, "USER_NOT_FOUND")
    walletless = builders.user(engine)  # as a user created in AirTM mode: no wallet
    assert_error(await api.get(f"/users/{walletless}/{route}"), 404, "WALLET_NOT_FOUND")


@pytest.mark.parametrize(("path", "fault", "code"), [
    ("", {"action": "status", "params": {"status": 503}}, "STELLAR_NETWORK_ERROR"),
    ("", {"action": "timeout", "params": {"ms": 50}, "times": 2}, "STELLAR_NETWORK_ERROR"),  # a GET is retried once
    # Horizon's rate limit is told apart, with its Retry-After passed on (errors.md: provider answered 429)
    ("/payments", {"action": "status", "params": {"status": 429}}, "PROVIDER_RATE_LIMITED"),
])
async def test_a_failing_horizon_is_a_provider_error(
        api: Api, engine: Engine, ledger: SandboxControl, path: str, fault: dict[str, Any], code: str) -> None:
    user_id, public_key = await active_user(api, engine)
    break_horizon(ledger, public_key, path, **fault)
    route = "wallet/transactions" if path else "wallet"
    assert_error(await api.get(f"/users/{user_id}/{route}"), 502, code)
    assert (await api.get(f"/users/{user_id}/{route}")).status == 200  # the fault is spent


async def test_wallet_routes_need_the_read_scope(api: Api, engine: Engine) -> None:
    user_id, _ = await active_user(api, engine)
    writer = api.as_((await new_key(api, "write"))["key"])
    assert_error(await writer.get(f"/users/{user_id}/wallet"), 403, "INSUFFICIENT_SCOPE")
    reader = api.as_((await new_key(api, "read"))["key"])
    assert (await reader.get(f"/users/{user_id}/wallet")).status == 200


async def test_verify_reports_usdc_on_the_ledger_that_the_book_never_credited(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user_id, public_key = await active_user(api, engine)
    ledger.pay("issuer", public_key, "12.3456789")
    details = assert_error(await api.get(f"/users/{user_id}/balance/verify"), 409, "BALANCE_DISCREPANCY")
    assert details == {"userId": user_id, "localBalance": "0.00", "providerBalance": "12.3456789",
                       "adjustments": "0.00", "difference": "-12.3456789", "currency": "USD"}


async def test_an_admin_credit_does_not_explain_ledger_usdc(api: Api, engine: Engine, ledger: SandboxControl) -> None:
    """Book 20.00 and ledger 12.3456789, but the 20.00 came from the adjustment account: 12.3456789 is unbooked."""
    user_id, public_key = await active_user(api, engine)
    ledger.pay("issuer", public_key, "12.3456789")
    assert (await api.post(f"/users/{user_id}/balance/credit", {"amount": "20.00"})).status == 200
    details = assert_error(await api.get(f"/users/{user_id}/balance/verify"), 409, "BALANCE_DISCREPANCY")
    assert details == {"userId": user_id, "localBalance": "20.00", "providerBalance": "12.3456789",
                       "adjustments": "20.00", "difference": "-12.3456789", "currency": "USD"}


async def test_verify_agrees_when_admin_postings_explain_the_book(api: Api, engine: Engine) -> None:
    """Credit 50.00, debit 20.00, reserve 5.00: book 30.00 = ledger 0 + net postings 30.00 (decision 7)."""
    user_id, _ = await active_user(api, engine)
    for operation, body in (("credit", {"amount": "50.00"}), ("debit", {"amount": "20.00"}),
                            ("reserve", {"amount": "5.00", "orderId": "ord-verify"})):
        assert (await api.post(f"/users/{user_id}/balance/{operation}", body)).status == 200
    reply = await api.get(f"/users/{user_id}/balance/verify")
    assert reply.status == 200, reply.body
    assert {k: v for k, v in reply.data.items() if k != "updatedAt"} == {
        "userId": user_id, "available": "25.00", "reserved": "5.00", "total": "30.00", "currency": "USD",
        "providerVerified": True, "providerBalance": "0.00", "adjustments": "30.00"}
    assert ISO_MS.fullmatch(reply.data["updatedAt"])


@pytest.mark.parametrize(("paid", "status"), [("1.00", 200), ("1.0000001", 409)])
async def test_a_discrepancy_is_one_that_exceeds_one_unit(
        api: Api, engine: Engine, ledger: SandboxControl, paid: str, status: int) -> None:
    user_id, public_key = await active_user(api, engine)
    ledger.pay("issuer", public_key, paid)
    reply = await api.get(f"/users/{user_id}/balance/verify")
    assert reply.status == status, reply.body
    if status == 200:
        assert (reply.data["providerVerified"], reply.data["providerBalance"]) == (True, "1.00")


async def test_verify_without_a_readable_provider_is_unverified(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user_id, public_key = await active_user(api, engine)
    break_horizon(ledger, public_key)
    reply = await api.get(f"/users/{user_id}/balance/verify")
    assert reply.status == 200, reply.body
    assert (reply.data["providerVerified"], reply.data["providerBalance"]) == (False, "unknown")
    walletless = builders.user(engine)
    reply = await api.get(f"/users/{walletless}/balance/verify")
    assert (reply.status, reply.data["providerVerified"], reply.data["providerBalance"]) == (200, False, "unknown")


async def test_sync_flags_a_discrepancy_and_never_changes_the_balance(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    user_id, public_key = await active_user(api, engine)
    ledger.pay("issuer", public_key, "12.3456789")
    before = await api.balance(user_id)
    reply = await api.post(f"/users/{user_id}/balance/sync")
    assert reply.status == 200, reply.body
    assert reply.data == {"synced": True, "localBalance": "0.00", "providerBalance": "12.3456789",
                          "discrepancy": "-12.3456789", "action": "flagged", "adjustments": "0.00"}
    assert await api.balance(user_id) == before


async def test_sync_finds_nothing_to_flag_when_the_book_is_explained(api: Api, engine: Engine) -> None:
    user_id, _ = await active_user(api, engine)
    assert (await api.post(f"/users/{user_id}/balance/credit", {"amount": "7.50"})).status == 200
    reply = await api.post(f"/users/{user_id}/balance/sync", {})
    assert reply.data == {"synced": True, "localBalance": "7.50", "providerBalance": "0.00",
                          "discrepancy": "0.00", "action": "none", "adjustments": "7.50"}


async def test_sync_of_a_user_without_a_provider_account_is_not_synced(api: Api, engine: Engine) -> None:
    walletless = builders.user(engine)
    reply = await api.post(f"/users/{walletless}/balance/sync")
    assert reply.status == 200, reply.body
    assert reply.data == {"synced": False, "localBalance": "0.00", "providerBalance": "unknown",
                          "discrepancy": "unknown", "action": "none", "adjustments": "unknown"}


async def test_verify_and_sync_answer_not_found_for_unknown_users(api: Api) -> None:
    for user_id in (UNKNOWN_USER, "ord_abc"):
        assert_error(await api.get(f"/users/{user_id}/balance/verify"), 404, "USER_NOT_FOUND")
        assert_error(await api.post(f"/users/{user_id}/balance/sync"), 404, "USER_NOT_FOUND")


async def test_sync_needs_the_write_scope(api: Api, engine: Engine) -> None:
    user_id, _ = await active_user(api, engine)
    reader = api.as_((await new_key(api, "read"))["key"])
    assert (await reader.get(f"/users/{user_id}/balance/verify")).status == 200
    assert_error(await reader.post(f"/users/{user_id}/balance/sync"), 403, "INSUFFICIENT_SCOPE")
