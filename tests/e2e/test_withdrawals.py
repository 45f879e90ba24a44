"""Crypto withdrawals: validated destinations, debited at creation, paid once, restored once on failure."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_escrow_flow import funded_buyer, usdc
from tests.fixtures.sandbox import SandboxControl


def events_of(engine: Engine, *aggregates: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT event_type FROM outbox WHERE aggregate_id = ANY(:a) ORDER BY id"),
                                 {"a": list(aggregates)}).scalars())


async def test_a_crypto_withdrawal_pays_the_destination_once_and_completes(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    user, wallet = await funded_buyer(api, engine, ledger, "100.00")
    outside = ledger.create_account(usdc_trustline=True)
    reply = await api.post("/withdrawals", {"userId": user["id"], "amount": "60.00", "destinationType": "crypto",
                                            "destinationRef": outside["publicKey"]}, headers={"Prefer": "wait=30"})
    assert reply.status == 201, reply.body
    assert (reply.data["status"], reply.data["committed"]) == ("WITHDRAWAL_COMPLETED", True)
    assert len(reply.data["transactionHash"]) == 64
    assert usdc(ledger, outside["publicKey"]) == Decimal("60")
    assert usdc(ledger, wallet["public_key"]) == Decimal("40")
    assert (await api.balance(user["id"]))["available"] == "40.00"
    assert events_of(engine, reply.data["id"])[-3:] == ["withdrawal.created", "withdrawal.committed",
                                                        "withdrawal.completed"]
    read = await api.get(f"/withdrawals/{reply.data['id']}?userId={user['id']}")
    assert read.data["status"] == "WITHDRAWAL_COMPLETED"
    listed = await api.get(f"/withdrawals?userId={user['id']}")
    assert [w["id"] for w in listed.data] == [reply.data["id"]]


async def test_a_payment_the_ledger_refuses_fails_the_withdrawal_and_restores_the_balance_once(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    # Given book money with no USDC behind it in the wallet (an administrative credit)
    user, _ = await active_wallet(api, engine)
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "20.00"})
    outside = ledger.create_account(usdc_trustline=True)
    reply = await api.post("/withdrawals", {"userId": user["id"], "amount": "15.00", "destinationType": "crypto",
                                            "destinationRef": outside["publicKey"]}, headers={"Prefer": "wait=30"})
    assert reply.status == 502, reply.body
    assert reply.error["code"] == "STELLAR_NETWORK_ERROR"
    withdrawal_id = reply.error["details"]["withdrawalId"]
    read = await api.get(f"/withdrawals/{withdrawal_id}")
    assert read.data["status"] == "WITHDRAWAL_FAILED"
    assert "op_underfunded" in read.data["failureReason"]
    assert (await api.balance(user["id"]))["available"] == "20.00"
    assert events_of(engine, withdrawal_id)[-1] == "withdrawal.failed"
    with engine.connect() as conn:
        restored = conn.execute(text("SELECT count(*) FROM outbox WHERE event_type = 'balance.credited' "
                                     "AND payload->>'sourceId' = :w"), {"w": withdrawal_id}).scalar()
    assert restored == 1
    assert usdc(ledger, outside["publicKey"]) == Decimal("0")


@pytest.mark.parametrize(("destination", "reason"), [
    ("GABC", "invalid_address"),
    ("unknown-account", "no_account"),
    ("no-trustline", "no_trustline"),
    ("self", "SELF_DESTINATION"),
])
async def test_a_destination_that_cannot_receive_is_refused_before_any_money_moves(
        api: Api, engine: Engine, ledger: SandboxControl, destination: str, reason: str) -> None:
    from stellar_sdk import Keypair

    user, wallet = await active_wallet(api, engine)
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "30.00"})
    ref = {"unknown-account": Keypair.random().public_key,
           "no-trustline": ledger.create_account(usdc_trustline=False)["publicKey"],
           "self": wallet["public_key"]}.get(destination, destination)
    reply = await api.post("/withdrawals", {"userId": user["id"], "amount": "10.00", "destinationType": "crypto",
                                            "destinationRef": ref})
    assert (reply.status, reply.error["code"]) == (422, "WITHDRAWAL_DESTINATION_INVALID")
    assert reply.error["details"]["reason"] == reason
    assert (await api.balance(user["id"]))["available"] == "30.00"


async def test_withdrawal_amounts_outside_the_limits_and_airtm_destinations_are_refused(
        api: Api, engine: Engine) -> None:
    user, _ = await active_wallet(api, engine)
    small = await api.post("/withdrawals", {"userId": user["id"], "amount": "9.99", "destinationType": "crypto",
                                            "destinationRef": "G"})
    assert small.error["details"]["fields"][0]["code"] == "AMOUNT_OUT_OF_RANGE"
    airtm = await api.post("/withdrawals", {"userId": user["id"], "amount": "10.00", "destinationType": "bank",
                                            "destinationRef": "bank_ref"})
    assert (airtm.status, airtm.error["code"]) == (422, "PROVIDER_NOT_ENABLED")
    missing = await api.get("/withdrawals/wd_doesnotexist")
    assert (missing.status, missing.error["code"]) == (404, "WITHDRAWAL_NOT_FOUND")
