"""AirTM-mode orders: escrow on the ledger backed by the platform's treasury pool (DESIGN decisions 25, 26).

Every flow runs on the AirTM-mode instance against the sandbox's Trustless Work, ledger and AirTM. The book
and the ledger are compared to the stroop: the users' claims move as in crypto mode, the treasury account
pays the contract, the settlement account (or the treasury account, for a refund) receives what the contract
paid, and the journal's pool accounts say exactly what the pool's accounts gained or lost.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.airtm.helpers import funded_user, linked_user, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance

WAIT = {"Prefer": "wait=30"}


def pool(engine: Engine) -> dict[str, str]:
    """The pool's ACTIVE accounts: public key -> purpose."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT public_key, purpose FROM wallets WHERE purpose IS NOT NULL "
                                 "AND status = 'ACTIVE'")).all()
    return {r.public_key: r.purpose for r in rows}


def usdc(airtm: AirtmControl, account: str) -> Decimal:
    ledger = airtm.sandbox
    body = ledger.http.get(f"{ledger.horizon_url}/accounts/{account}").json()
    return next((Decimal(b["balance"]) for b in body.get("balances", []) if b.get("asset_code") == "USDC"),
                Decimal(0))


def journal(engine: Engine, account: str) -> Decimal:
    with engine.connect() as conn:
        return Decimal(conn.execute(text("SELECT coalesce(sum(amount), 0) FROM journal_entries WHERE account = :a"),
                                    {"a": account}).scalar() or 0)


async def ready_pool(engine: Engine, airtm: AirtmControl, *, at_least: str = "200") -> dict[str, str]:
    """Wait for bootstrap's pool (4 treasury accounts and the settlement account) to be active on the ledger,
    and pay each treasury account USDC up to ``at_least`` (the operator's float, paid by the sandbox's issuer)."""
    accounts = await until(lambda: _async(lambda: (found := pool(engine)) and len(found) == 5 and found),
                           "the treasury pool to be activated", seconds=60)
    for key, purpose in accounts.items():
        short = Decimal(at_least) - usdc(airtm, key)
        if purpose == "TREASURY" and short > 0:
            airtm.sandbox.pay("issuer", key, f"{short:.7f}")
    return dict(accounts)


async def _async(fn: Any) -> Any:
    return fn()


def _sweeps(engine: Engine) -> tuple[bool, list[tuple[str, Decimal]]]:
    """Whether a settlement sweep is open, and each confirmed one's (destination, amount)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, params FROM chain_steps WHERE kind = 'settlement_sweep'")).all()
    return (any(r.status in ("PENDING", "SIGNED") for r in rows),
            sorted((r.params["destination"], Decimal(r.params["amount"])) for r in rows if r.status == "CONFIRMED"))


def snapshot(engine: Engine, airtm: AirtmControl, accounts: dict[str, str]) -> dict[str, Decimal]:
    """Each pool account's USDC on the ledger and the journal's pool and AirTM accounts, as if no settlement
    sweep had run (the scheduler sweeps every few seconds here; a sweep only moves USDC within the pool): read
    while no sweep is open, and again until no sweep confirmed in between."""
    for _ in range(200):
        open_before, swept = _sweeps(engine)
        figures = {key: usdc(airtm, key) for key in accounts}
        for account in ("platform:treasury", "platform:settlement", "world:airtm", "world:trustless_fee"):
            figures[account] = journal(engine, account)
        open_after, swept_after = _sweeps(engine)
        if open_before or open_after or swept != swept_after:
            time.sleep(0.1)
            continue
        settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
        for destination, amount in swept:
            figures[settlement] += amount
            figures[destination] -= amount
            figures["platform:settlement"] += amount
            figures["platform:treasury"] -= amount
        return figures
    raise AssertionError("a settlement sweep stayed open")


def delta(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def treasury_order(api: Api, airtm: AirtmControl, amount: str, *, funded: str | None = None,
                         seller: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """An AIRTM-backed buyer topped up through the sandbox's AirTM, a linked seller, an order reserved."""
    buyer, _ = await funded_user(api, airtm, funded or amount)
    seller = seller or (await linked_user(api, airtm))[0]
    reply = await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": amount,
                                       "title": "Logo"})
    assert reply.status == 201, reply.body
    assert reply.data["fundingMode"] == "TREASURY"
    assert (await api.post(f"/orders/{reply.data['id']}/reserve")).status == 200
    return buyer, seller, reply.data


async def escrowed(api: Api, order_id: str) -> dict[str, Any]:
    created = await api.post(f"/orders/{order_id}/escrow", headers=WAIT)
    assert created.status == 200, created.body
    assert created.data["escrow"]["status"] == "CREATED", created.body
    assert created.data["escrow"]["fundingMode"] == "TREASURY"
    funded = await api.post(f"/orders/{order_id}/escrow/fund", headers=WAIT)
    assert funded.status == 200, funded.body
    assert funded.data["status"] == "IN_PROGRESS", funded.body
    return dict(funded.data)


def funder_of(engine: Engine, order_id: str) -> tuple[str, str]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT treasury_account, funder_account FROM escrows WHERE order_id = :o "
                                "AND status <> 'DISCARDED'"), {"o": order_id}).one()
    return row.treasury_account, row.funder_account


async def balance(api: Api, user_id: str) -> tuple[str, str]:
    body = await api.balance(user_id)
    return body["available"], body["reserved"]


async def test_users_are_airtm_backed_in_airtm_mode_and_withdrawals_follow_the_backing(
        airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    assert user["backing"] == "AIRTM"
    crypto = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "10.00", "destinationType": "crypto",
                                                   "destinationRef": "G" + "A" * 55})
    assert (crypto.status, crypto.error["code"]) == (422, "PROVIDER_NOT_ENABLED"), crypto.body
    assert crypto.error["details"] == {"provider": "crypto", "backing": "AIRTM"}


async def test_a_release_pays_the_settlement_account_and_the_book_moves_the_claims(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    buyer, seller, order = await treasury_order(airtm_api, airtm, "40.00", funded="50.00")
    before = snapshot(engine, airtm, accounts)
    funded = await escrowed(airtm_api, order["id"])
    assert funded["fundingMode"] == "TREASURY"
    approver, funder = funder_of(engine, order["id"])
    assert approver in accounts
    assert accounts[funder] == "TREASURY"
    assert await balance(airtm_api, buyer["id"]) == ("10.00", "0.00")
    assert delta(before, snapshot(engine, airtm, accounts)) == {
        funder: Decimal("-40"), "platform:treasury": Decimal("-40"), "world:airtm": Decimal("40")}

    released = await airtm_api.post(f"/orders/{order['id']}/resolution/release", {"requestedBy": "BUYER"},
                                    headers=WAIT)
    assert released.status == 200, released.body
    assert (released.data["status"], released.data["finalStatus"]) == ("CLOSED", "RELEASED"), released.body
    net, fee = Decimal(released.data["netAmount"]), Decimal(released.data["trustlessFee"])
    assert net + fee + Decimal(released.data["platformFee"]) == Decimal("40")
    assert fee == Decimal("0.12")  # Trustless Work's 0.3%
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
    assert delta(before, snapshot(engine, airtm, accounts)) == {
        funder: Decimal("-40"), settlement: net, "platform:treasury": Decimal("-40"), "platform:settlement": net,
        "world:airtm": Decimal("40") - net, "world:trustless_fee": fee}
    assert Decimal((await balance(airtm_api, seller["id"]))[0]) == net
    assert await balance(airtm_api, buyer["id"]) == ("10.00", "0.00")


async def test_a_refund_pays_the_treasury_account_back(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    buyer, seller, order = await treasury_order(airtm_api, airtm, "20.00")
    await escrowed(airtm_api, order["id"])
    approver, _ = funder_of(engine, order["id"])
    before = snapshot(engine, airtm, accounts)
    refunded = await airtm_api.post(f"/orders/{order['id']}/resolution/refund", {"reason": "Seller gone"},
                                    headers=WAIT)
    assert refunded.status == 200, refunded.body
    assert refunded.data["finalStatus"] == "REFUNDED", refunded.body
    net = Decimal(refunded.data["netAmount"])
    assert net == Decimal("20") - Decimal(refunded.data["trustlessFee"]) - Decimal(refunded.data["platformFee"])
    # the contract paid the escrow's treasury account (its approver and dispute opener), and the buyer's claim
    assert delta(before, snapshot(engine, airtm, accounts)) == {
        approver: net, "platform:treasury": net, "world:airtm": -net,
        "world:trustless_fee": Decimal(refunded.data["trustlessFee"])}
    assert Decimal((await balance(airtm_api, buyer["id"]))[0]) == net
    assert await balance(airtm_api, seller["id"]) == ("0.00", "0.00")


@pytest.mark.parametrize(("decision", "split"), [("FULL_RELEASE", None), ("FULL_REFUND", None),
                                             ("SPLIT", ("6.00", "4.00"))])
async def test_each_dispute_decision_pays_the_pool_accounts_and_credits_the_claims(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance, decision: str,
        split: tuple[str, str] | None) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    buyer, seller, order = await treasury_order(airtm_api, airtm, "10.00")
    await escrowed(airtm_api, order["id"])
    approver, _ = funder_of(engine, order["id"])
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
    opened = await airtm_api.post(f"/orders/{order['id']}/resolution/dispute",
                                  {"openedBy": "BUYER", "reason": "NOT_DELIVERED"})
    assert opened.status == 201, opened.body
    dispute_id = opened.data["id"]
    before = snapshot(engine, airtm, accounts)
    body: dict[str, Any] = {"decision": decision}
    if split:
        body |= {"releaseAmount": split[0], "refundAmount": split[1]}
    resolved = await airtm_api.post(f"/disputes/{dispute_id}/resolve", body, headers=WAIT)
    assert resolved.status == 200, resolved.body
    closed = await until(lambda: _order_closed(airtm_api, order["id"]), "the order to close", 30)
    shares = {d["role"]: Decimal(d["netAmount"]) for d in closed["distributions"]}
    expected: dict[str, Decimal] = {"world:trustless_fee": Decimal(closed["trustlessFee"])}
    if "seller" in shares:
        expected |= {settlement: shares["seller"], "platform:settlement": shares["seller"]}
    if "buyer" in shares:
        expected |= {approver: shares["buyer"], "platform:treasury": shares["buyer"]}
    expected["world:airtm"] = -sum(shares.values(), Decimal(0))
    assert delta(before, snapshot(engine, airtm, accounts)) == expected
    for user, role in ((seller, "seller"), (buyer, "buyer")):
        available, reserved = await balance(airtm_api, user["id"])
        assert (Decimal(available), reserved) == (shares.get(role, Decimal(0)), "0.00")


async def _order_closed(api: Api, order_id: str) -> Any:
    reply = await api.get(f"/orders/{order_id}")
    return reply.data if reply.data["status"] == "CLOSED" else None


async def test_a_cancel_before_escrow_returns_the_reservation_and_touches_no_pool(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    buyer, _, order = await treasury_order(airtm_api, airtm, "5.00")
    before = snapshot(engine, airtm, accounts)
    canceled = await airtm_api.post(f"/orders/{order['id']}/cancel", {"reason": "changed my mind"})
    assert canceled.status == 200, canceled.body
    assert await balance(airtm_api, buyer["id"]) == ("5.00", "0.00")
    assert delta(before, snapshot(engine, airtm, accounts)) == {}


async def test_a_treasury_that_cannot_cover_refuses_the_fund_before_anything_moves(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    largest = max(usdc(airtm, k) for k, p in accounts.items() if p == "TREASURY")
    amount = f"{largest + 1:.2f}"
    buyer, _ = await linked_user(airtm_api, airtm)
    credit = await airtm_api.post(f"/users/{buyer['id']}/balance/credit", {"amount": amount})
    assert credit.status == 200, credit.body
    seller, _ = await linked_user(airtm_api, airtm)
    order = (await airtm_api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": amount,
                                              "title": "Too big"})).data
    assert (await airtm_api.post(f"/orders/{order['id']}/reserve")).status == 200
    assert (await airtm_api.post(f"/orders/{order['id']}/escrow", headers=WAIT)).status == 200
    before = snapshot(engine, airtm, accounts)
    refused = await airtm_api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT)
    assert (refused.status, refused.error["code"]) == (422, "TREASURY_INSUFFICIENT_FUNDS"), refused.body
    assert refused.error["details"]["required"] == amount
    assert Decimal(refused.error["details"]["available"]) < Decimal(amount)
    after = (await airtm_api.get(f"/orders/{order['id']}")).data
    assert (after["status"], after["escrow"]["status"]) == ("ESCROW_CREATING", "CREATED")
    assert await balance(airtm_api, buyer["id"]) == ("0.00", amount)
    assert delta(before, snapshot(engine, airtm, accounts)) == {}


async def test_concurrent_funds_never_overdraw_the_pool(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    """Each treasury account covers at most one escrow of this size; more funds than that arrive at once: as
    many succeed as accounts can cover, the rest are refused before anything moved, none fails on the ledger."""
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    # earlier releases paid the settlement account: once it is swept, nothing moves into the pool meanwhile
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
    await until(lambda: _async(lambda: usdc(airtm, settlement) == 0 and not _sweeps(engine)[0]),
                "the settlement account to be swept into the pool", seconds=60)
    treasuries = {k: usdc(airtm, k) for k, p in accounts.items() if p == "TREASURY"}
    size = (max(treasuries.values()) / 2).quantize(Decimal("0.01")) + Decimal("0.01")  # 2 never fit in one account
    covered = sum(1 for held in treasuries.values() if held >= size)
    orders = []
    for _ in range(covered + 2):
        buyer, _ = await linked_user(airtm_api, airtm)
        assert (await airtm_api.post(f"/users/{buyer['id']}/balance/credit", {"amount": f"{size}"})).status == 200
        seller, _ = await linked_user(airtm_api, airtm)
        order = (await airtm_api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"],
                                                  "amount": f"{size}", "title": "Race"})).data
        assert (await airtm_api.post(f"/orders/{order['id']}/reserve")).status == 200
        assert (await airtm_api.post(f"/orders/{order['id']}/escrow", headers=WAIT)).status == 200
        orders.append(order["id"])
    replies = await asyncio.gather(*(airtm_api.post(f"/orders/{o}/escrow/fund", headers=WAIT) for o in orders))
    outcomes = sorted((r.status, r.error["code"] if r.status >= 400 else r.data["status"]) for r in replies)
    assert outcomes == sorted([(200, "IN_PROGRESS")] * covered + [(422, "TREASURY_INSUFFICIENT_FUNDS")] * 2), \
        [r.body for r in replies]
    for key, held in treasuries.items():
        assert usdc(airtm, key) >= 0
        assert held - usdc(airtm, key) in (Decimal(0), size)  # at most one escrow from each account


async def test_an_order_between_an_airtm_backed_buyer_and_an_unlinked_seller_is_refused(
        airtm_api: Api, airtm: AirtmControl) -> None:
    buyer, _ = await linked_user(airtm_api, airtm)
    seller = await airtm_api.user()
    reply = await airtm_api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                             "title": "Logo"})
    assert (reply.status, reply.error["code"]) == (422, "AIRTM_USER_NOT_LINKED"), reply.body
    assert reply.error["details"] == {"userId": seller["id"], "field": "sellerId"}


async def test_the_scheduler_sweeps_the_settlement_account_back_to_the_pool(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    """A release paid the settlement account; the sweep (a chain step) moves all of it to a treasury account,
    and the journal's pool accounts follow: the pool's USDC on the ledger less the journal's pool accounts (the
    operator's float) does not change."""
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    _, _, order = await treasury_order(airtm_api, airtm, "12.00")
    await escrowed(airtm_api, order["id"])
    released = await airtm_api.post(f"/orders/{order['id']}/resolution/release", {}, headers=WAIT)
    assert released.status == 200, released.body
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")

    def operator_float() -> Decimal:
        return (sum((usdc(airtm, k) for k in accounts), Decimal(0)) - journal(engine, "platform:treasury")
                - journal(engine, "platform:settlement"))

    before = operator_float()
    await until(lambda: _async(lambda: usdc(airtm, settlement) == 0 and journal(engine, "platform:settlement") == 0
                               and not _sweeps(engine)[0]), "the settlement account to be swept", seconds=60)
    assert operator_float() == before
    with engine.connect() as conn:
        sweeps = conn.execute(text("SELECT status, params FROM chain_steps WHERE kind = 'settlement_sweep'")).all()
    assert sweeps
    assert {s.status for s in sweeps} == {"CONFIRMED"}
    assert {accounts[s.params["destination"]] for s in sweeps} == {"TREASURY"}
