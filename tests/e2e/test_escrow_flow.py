"""Escrow creation and funding through the API, against the sandbox's Trustless Work and ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import Engine, text

from orchestrator.settings import Settings
from tests.api import Api
from tests.e2e.test_deposits import active_wallet, credited
from tests.fixtures.sandbox import SandboxControl, tw_submissions


async def funded_buyer(api: Api, engine: Engine, ledger: SandboxControl, amount: str) -> tuple[dict, dict]:
    """A buyer whose wallet received ``amount`` USDC on the ledger, credited by the monitor."""
    buyer, wallet = await active_wallet(api, engine)
    ledger.pay("issuer", wallet["public_key"], amount)
    await credited(engine, buyer["id"], 1)
    return buyer, wallet


def usdc(ledger: SandboxControl, account: str) -> Decimal:
    body = ledger.http.get(f"{ledger.horizon_url}/accounts/{account}").json()
    return next(Decimal(b["balance"]) for b in body["balances"] if b.get("asset_code") == "USDC")


async def test_an_order_is_escrowed_and_funded_on_the_ledger_and_the_book_follows(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    buyer, buyer_wallet = await funded_buyer(api, engine, ledger, "100.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "80.00",
                                        "title": "Logo"})).data
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200

    created = await api.post(f"/orders/{order['id']}/escrow", headers={"Prefer": "wait=30"})
    assert created.status == 200, created.body
    assert created.data["status"] == "ESCROW_CREATING"
    assert created.data["escrow"]["status"] == "CREATED"
    assert created.data["escrow"]["trustlessContractId"].startswith("C")

    funded = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "wait=30"})
    assert funded.status == 200, funded.body
    assert funded.data["status"] == "IN_PROGRESS"
    assert funded.data["escrow"]["status"] == "FUNDED"
    assert funded.data["escrow"]["fundedAt"] is not None
    # the book: the reservation left for the contract; the ledger: the wallet paid the contract
    book = await api.balance(buyer["id"])
    assert (book["available"], book["reserved"]) == ("20.00", "0.00")
    assert usdc(ledger, buyer_wallet["public_key"]) == Decimal("20")
    with engine.connect() as conn:
        events = conn.execute(text("SELECT event_type FROM outbox WHERE aggregate_id IN (:o, :e) ORDER BY id"),
                              {"o": order["id"], "e": funded.data["escrow"]["id"]}).scalars().all()
    assert events == ["order.created", "order.funds_reserved", "order.escrow_creating", "escrow.created",
                      "order.escrow_funding", "escrow.funding_started", "escrow.funded", "order.escrow_funded",
                      "order.in_progress"]


async def test_escrow_answers_202_under_respond_async_and_finishes_in_the_background(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    buyer, _ = await funded_buyer(api, engine, ledger, "10.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                        "title": "Icon"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    accepted = await api.post(f"/orders/{order['id']}/escrow", headers={"Prefer": "respond-async"})
    assert accepted.status == 202
    assert accepted.body["meta"]["pending"] is True
    for _ in range(100):
        escrow = (await api.get(f"/orders/{order['id']}")).data["escrow"]
        if escrow and escrow["status"] == "CREATED":
            break
        await asyncio.sleep(0.1)
    assert escrow["status"] == "CREATED"
    again = await api.post(f"/orders/{order['id']}/escrow")
    assert again.status == 409
    assert again.error["code"] == "ESCROW_ALREADY_EXISTS"


async def test_funding_before_the_contract_exists_or_without_wallets_is_refused(api: Api, engine: Engine) -> None:
    buyer = await api.funded_user("50.00")  # book money only, and its wallet may not be active yet
    seller = await api.user()
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "5.00",
                                        "title": "x"})).data
    early = await api.post(f"/orders/{order['id']}/escrow/fund")
    assert early.status == 409
    assert early.error["code"] == "INVALID_STATE_TRANSITION"
    assert early.error["details"]["allowedStates"] == ["ESCROW_CREATING"]


async def test_a_fund_transaction_the_contract_refuses_rolls_the_order_back_and_returns_the_reservation(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None, settings: Settings) -> None:
    buyer, buyer_wallet = await funded_buyer(api, engine, ledger, "30.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "30.00",
                                        "title": "Site"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    assert (await api.post(f"/orders/{order['id']}/escrow", headers={"Prefer": "wait=30"})).status == 200
    ledger.add_fault(**tw_submissions(settings), action="contract_reject", times=1)
    try:
        refused = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "wait=30"})
    finally:
        ledger.clear_faults()
    assert refused.status == 422, refused.body
    assert refused.error["code"] == "ESCROW_FUNDING_FAILED"
    after = (await api.get(f"/orders/{order['id']}")).data
    assert after["status"] == "ESCROW_CREATING"
    assert after["escrow"]["status"] == "CREATED"
    book = await api.balance(buyer["id"])
    assert (book["available"], book["reserved"]) == ("0.00", "30.00")
    assert usdc(ledger, buyer_wallet["public_key"]) == Decimal("30")
    # and the order can be funded again
    again = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "wait=30"})
    assert again.status == 200, again.body
    assert again.data["status"] == "IN_PROGRESS"


async def in_progress_order(api: Api, engine: Engine, ledger: SandboxControl, amount: str,
                            milestones: list[dict] | None = None) -> tuple[dict, dict, dict, dict]:
    buyer, buyer_wallet = await funded_buyer(api, engine, ledger, amount)
    seller, seller_wallet = await active_wallet(api, engine)
    body = {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": amount, "title": "Work"}
    if milestones:
        body["milestones"] = milestones
    order = (await api.post("/orders", body)).data
    await api.post(f"/orders/{order['id']}/reserve")
    assert (await api.post(f"/orders/{order['id']}/escrow", headers={"Prefer": "wait=30"})).status == 200
    funded = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "wait=30"})
    assert funded.data["status"] == "IN_PROGRESS"
    return order, buyer, seller, seller_wallet | {"buyer_public_key": buyer_wallet["public_key"]}


async def test_a_release_pays_the_seller_what_the_contract_paid_and_closes_the_order(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, buyer, seller, wallets = await in_progress_order(api, engine, ledger, "80.00")
    released = await api.post(f"/orders/{order['id']}/resolution/release", headers={"Prefer": "wait=30"})
    assert released.status == 200, released.body
    assert (released.data["status"], released.data["finalStatus"]) == ("CLOSED", "RELEASED")
    assert released.data["escrow"]["status"] == "RELEASED"
    assert (released.data["grossAmount"], released.data["trustlessFee"], released.data["netAmount"]) == (
        "80.00", "0.24", "79.76")
    # Trustless Work keeps 0.3 %: the seller's book and wallet both hold the net 79.76 (decision 1)
    assert usdc(ledger, wallets["public_key"]) == Decimal("79.76")
    assert (await api.balance(seller["id"]))["available"] == "79.76"
    book = await api.balance(buyer["id"])
    assert (book["available"], book["reserved"]) == ("0.00", "0.00")
    with engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM outbox WHERE aggregate_id = :o AND event_type = "
                                    "'order.released'"), {"o": order["id"]}).scalar_one()
    assert (payload["grossAmount"], payload["trustlessFee"], payload["netAmount"]) == ("80.00", "0.24", "79.76")


async def test_a_release_waits_for_every_milestone(api: Api, engine: Engine, ledger: SandboxControl,
                                                  monitor: None) -> None:
    order, *_ = await in_progress_order(api, engine, ledger, "10.00",
                                        milestones=[{"ref": "m1", "title": "Draft", "amount": "10.00"}])
    refused = await api.post(f"/orders/{order['id']}/resolution/release")
    assert refused.status == 409
    assert refused.error["details"]["incompleteMilestones"] == ["m1"]
    done = await api.post(f"/orders/{order['id']}/milestones/m1/complete")
    assert done.status == 200, done.body
    assert (done.data["status"], done.data["milestoneRef"]) == ("COMPLETED", "m1")
    twice = await api.post(f"/orders/{order['id']}/milestones/m1/complete")
    assert twice.status == 409
    assert (await api.post(f"/orders/{order['id']}/milestones/nope/complete")).error["code"] == "MILESTONE_NOT_FOUND"
    released = await api.post(f"/orders/{order['id']}/resolution/release", headers={"Prefer": "wait=30"})
    assert released.data["status"] == "CLOSED"


async def test_a_refund_returns_the_net_to_the_buyer_and_closes_the_order(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, buyer, _, wallets = await in_progress_order(api, engine, ledger, "50.00")
    refunded = await api.post(f"/orders/{order['id']}/resolution/refund", {"reason": "Seller cancelled"},
                              headers={"Prefer": "wait=30"})
    assert refunded.status == 200, refunded.body
    assert (refunded.data["status"], refunded.data["finalStatus"]) == ("CLOSED", "REFUNDED")
    assert usdc(ledger, wallets["buyer_public_key"]) == Decimal("49.85")
    assert (await api.balance(buyer["id"]))["available"] == "49.85"
    again = await api.post(f"/orders/{order['id']}/resolution/release")
    assert again.status == 409
    assert again.error["code"] == "INVALID_STATE_TRANSITION"


async def test_funding_from_a_wallet_without_the_usdc_on_the_ledger_is_refused_before_signing(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    # the buyer's book holds the money (an administrative credit) but its wallet holds no USDC
    buyer, _ = await active_wallet(api, engine)
    await api.post(f"/users/{buyer['id']}/balance/credit", {"amount": "25.00"})
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "25.00",
                                        "title": "Card"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    assert (await api.post(f"/orders/{order['id']}/escrow", headers={"Prefer": "wait=30"})).status == 200
    refused = await api.post(f"/orders/{order['id']}/escrow/fund")
    assert (refused.status, refused.error["code"]) == (422, "ESCROW_INSUFFICIENT_FUNDS")
    assert refused.error["details"]["required"] == "25.00"
    assert (await api.get(f"/orders/{order['id']}")).data["status"] == "ESCROW_CREATING"
