"""Switching ``PAYMENT_PROVIDER`` with a restart keeps every user, balance, order and escrow (issue 15 point 4,
DESIGN decisions 16 and 26): money follows its own backing, whatever mode the instance runs now.

The instance (tests/airtm/switching.py) is restarted with the other provider on the same database. Orders
funded in one mode are released after the switch; a WALLET-backed user's deposits are still credited in
AirTM mode; an AIRTM-backed user's top-up and withdrawal still in flight are settled in crypto mode (AirTM's
webhooks do not reach this instance: the scheduler's polling and the refresh routes do it); what the current
mode refuses answers the spec's error. Mixed orders (one party of each backing) release and refund to the
stroop: the book, each wallet and pool account on the ledger, and the journal's pool accounts.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.airtm.helpers import linked_user, status_of, until
from tests.airtm.switching import SwitchableInstance, switch_api, switchable
from tests.airtm.test_treasury_escrow import journal, usdc
from tests.api import Api
from tests.e2e.test_deposits import credited
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.airtm import AirtmControl

__all__ = ["switch_api", "switchable"]
WAIT = {"Prefer": "wait=30"}
POOL_JOURNAL = ("platform:treasury", "platform:settlement", "world:airtm", "world:trustless_fee")


async def wallet_user(api: Api, instance: SwitchableInstance, airtm: AirtmControl,
                      deposit: str | None = None) -> tuple[dict[str, Any], str]:
    """A WALLET-backed user (the instance must be in crypto mode) with its active wallet's key; ``deposit`` USDC
    paid into the wallet on the ledger and credited by the monitor."""
    user = await api.user()
    assert user["backing"] == "WALLET", user
    key = (await wallet_status(instance.engine, user["id"], seconds=30))["public_key"]
    if deposit is not None:
        airtm.sandbox.pay("issuer", key, deposit)
        await credited(instance.engine, user["id"], 1)
    return user, key


async def airtm_user(api: Api, airtm: AirtmControl, topup: str | None = None) -> tuple[dict[str, Any], str]:
    """An AIRTM-backed, linked user (the instance must be in AirTM mode), topped up through AirTM's checkout
    and settled by the instance's polling."""
    user, email = await linked_user(api, airtm)
    assert user["backing"] == "AIRTM", user
    if topup is not None:
        reply = await api.post("/topups", {"userId": user["id"], "amount": topup})
        assert reply.status == 201, reply.body
        airtm.payin(reply.data["airtmPayinId"], "confirm", email=email)
        await status_of(api, f"/topups/{reply.data['id']}", "TOPUP_SUCCEEDED", seconds=30)
    return user, email


async def pool_ready(instance: SwitchableInstance, airtm: AirtmControl, at_least: str = "200") -> dict[str, str]:
    """The pool's accounts (key -> purpose) once active; each treasury account holds at least ``at_least`` USDC
    (the operator's float, paid by the sandbox's issuer)."""
    def found() -> dict[str, str]:
        with instance.engine.connect() as conn:
            rows = conn.execute(text("SELECT public_key, purpose, status FROM wallets WHERE purpose IS NOT NULL")
                                ).all()
        return {r.public_key: r.purpose for r in rows} if rows and all(r.status == "ACTIVE" for r in rows) else {}

    accounts: dict[str, str] = await until(lambda: asyncio.sleep(0, found()), "the pool to be active", seconds=60)
    for key, purpose in accounts.items():
        short = Decimal(at_least) - usdc(airtm, key)
        if purpose == "TREASURY" and short > 0:
            airtm.sandbox.pay("issuer", key, f"{short:.7f}")
    return accounts


def snapshot(engine: Engine, airtm: AirtmControl, keys: list[str]) -> dict[str, Decimal]:
    figures = {key: usdc(airtm, key) for key in keys}
    return figures | {account: journal(engine, account) for account in POOL_JOURNAL}


def delta(before: dict[str, Decimal], after: dict[str, Decimal]) -> dict[str, Decimal]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


async def balance(api: Api, user_id: str) -> tuple[Decimal, Decimal]:
    body = await api.balance(user_id)
    return Decimal(body["available"]), Decimal(body["reserved"])


async def funded_order(api: Api, buyer_id: str, seller_id: str, amount: str) -> dict[str, Any]:
    order = await api.post("/orders", {"buyerId": buyer_id, "sellerId": seller_id, "amount": amount,
                                       "title": "Switch"})
    assert order.status == 201, order.body
    assert (await api.post(f"/orders/{order.data['id']}/reserve")).status == 200
    created = await api.post(f"/orders/{order.data['id']}/escrow", headers=WAIT)
    assert (created.status, created.data["escrow"]["status"]) == (200, "CREATED"), created.body
    funded = await api.post(f"/orders/{order.data['id']}/escrow/fund", headers=WAIT)
    assert (funded.status, funded.data["status"]) == (200, "IN_PROGRESS"), funded.body
    return dict(funded.data)


def treasury_account(engine: Engine, order_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT treasury_account FROM escrows WHERE order_id = :o AND status <> "
                                 "'DISCARDED'"), {"o": order_id}).scalar()


async def settle(api: Api, order_id: str, how: str) -> dict[str, Any]:
    body = {"requestedBy": "BUYER"} if how == "release" else {"reason": "Seller gone"}
    reply = await api.post(f"/orders/{order_id}/resolution/{how}", body, headers=WAIT)
    assert reply.status == 200, reply.body
    assert (reply.data["status"], reply.data["finalStatus"]) == (
        "CLOSED", "RELEASED" if how == "release" else "REFUNDED"), reply.body
    return dict(reply.data)


async def test_an_order_funded_in_crypto_mode_is_released_after_a_switch_to_airtm_and_deposits_go_on(
        switch_api: Api, switchable: SwitchableInstance, airtm: AirtmControl) -> None:
    switchable.switch("crypto")
    buyer, buyer_key = await wallet_user(switch_api, switchable, airtm, deposit="100")
    seller, seller_key = await wallet_user(switch_api, switchable, airtm)
    order = await funded_order(switch_api, buyer["id"], seller["id"], "60.00")
    assert order["fundingMode"] == "WALLET"

    switchable.switch("airtm")
    newcomer = await switch_api.user()
    assert newcomer["backing"] == "AIRTM"  # new users follow the mode; the old ones keep theirs
    assert (await switch_api.get(f"/users/{buyer['id']}")).data["backing"] == "WALLET"
    released = await settle(switch_api, order["id"], "release")
    net = Decimal(released["netAmount"])
    assert net + Decimal(released["trustlessFee"]) + Decimal(released["platformFee"]) == Decimal("60")
    assert await balance(switch_api, seller["id"]) == (net, 0)
    assert usdc(airtm, seller_key) == net  # the contract paid the seller's own wallet, to the stroop
    assert await balance(switch_api, buyer["id"]) == (Decimal("40"), 0)
    assert usdc(airtm, buyer_key) == Decimal("40")

    # the WALLET-backed user keeps its wallet: deposits are still credited, and its instructions name the wallet
    airtm.sandbox.pay("issuer", buyer_key, "5")
    await credited(switchable.engine, buyer["id"], 2)
    assert await balance(switch_api, buyer["id"]) == (Decimal("45"), 0)
    instructions = await switch_api.get(f"/users/{buyer['id']}/wallet/deposit")
    assert instructions.status == 200, instructions.body
    assert instructions.data["address"] == buyer_key, instructions.body
    # a crypto withdrawal follows the backing (decision 26); an AirTM top-up is refused with the spec's error
    topup = await switch_api.post("/topups", {"userId": buyer["id"], "amount": "10.00"})
    assert (topup.status, topup.error["code"]) == (422, "PROVIDER_NOT_ENABLED"), topup.body
    withdrawal = await switch_api.post("/withdrawals", {"userId": buyer["id"], "amount": "10.00",
                                                        "destinationType": "crypto", "destinationRef": seller_key},
                                       headers=WAIT)
    assert withdrawal.status == 201, withdrawal.body
    await status_of(switch_api, f"/withdrawals/{withdrawal.data['id']}", "WITHDRAWAL_COMPLETED", seconds=30)
    assert usdc(airtm, buyer_key) == Decimal("35")
    assert await balance(switch_api, buyer["id"]) == (Decimal("35"), 0)


async def test_airtm_money_in_flight_is_settled_after_a_switch_to_crypto(
        switch_api: Api, switchable: SwitchableInstance, airtm: AirtmControl) -> None:
    switchable.switch("airtm")
    accounts = await pool_ready(switchable, airtm)
    buyer, email = await airtm_user(switch_api, airtm, topup="60.00")
    seller, _ = await airtm_user(switch_api, airtm)
    order = await funded_order(switch_api, buyer["id"], seller["id"], "30.00")
    assert order["fundingMode"] == "TREASURY"
    open_topup = await switch_api.post("/topups", {"userId": buyer["id"], "amount": "10.00"})
    assert open_topup.status == 201, open_topup.body
    pending = await switch_api.post("/withdrawals", {"userId": buyer["id"], "amount": "10.00",
                                                     "destinationType": "bank", "destinationRef": "bank_ref"})
    assert (pending.status, pending.data["status"]) == (201, "WITHDRAWAL_CREATED"), pending.body
    waiting = await switch_api.post("/withdrawals", {"userId": buyer["id"], "amount": "10.00",
                                                     "destinationType": "bank", "destinationRef": "bank_ref"})
    assert waiting.status == 201, waiting.body
    airtm.call("POST", "/airtm/payout-scripts", json={"outcome": "pending", "code": waiting.data["id"]})
    assert (await switch_api.post(f"/withdrawals/{waiting.data['id']}/commit")).status == 200
    await status_of(switch_api, f"/withdrawals/{waiting.data['id']}", "WITHDRAWAL_PENDING_USER_ACTION", seconds=30)
    assert await balance(switch_api, buyer["id"]) == (Decimal("10"), 0)

    switchable.switch("crypto")
    newcomer = await switch_api.user()
    assert newcomer["backing"] == "WALLET"
    # the buyer pays at AirTM after the switch: the scheduler's polling credits it, exactly once
    airtm.payin(open_topup.data["airtmPayinId"], "confirm", email=email)
    await status_of(switch_api, f"/topups/{open_topup.data['id']}", "TOPUP_SUCCEEDED", seconds=30)
    assert await balance(switch_api, buyer["id"]) == (Decimal("20"), 0)
    # the uncommitted withdrawal is committed and completed in crypto mode
    committed = await switch_api.post(f"/withdrawals/{pending.data['id']}/commit")
    assert committed.status == 200, committed.body
    await status_of(switch_api, f"/withdrawals/{pending.data['id']}", "WITHDRAWAL_COMPLETED", seconds=30)
    refreshed = await switch_api.post(f"/withdrawals/{waiting.data['id']}/refresh")
    assert (refreshed.status, refreshed.data["status"]) == (200, "WITHDRAWAL_PENDING_USER_ACTION"), refreshed.body
    airtm.payout(waiting.data["airtmPayoutId"], "complete")  # the recipient acted: polling completes it
    await status_of(switch_api, f"/withdrawals/{waiting.data['id']}", "WITHDRAWAL_COMPLETED", seconds=30)
    assert await balance(switch_api, buyer["id"]) == (Decimal("20"), 0)

    # the order funded by the treasury in AirTM mode is released in crypto mode
    keys = list(accounts)
    before = snapshot(switchable.engine, airtm, keys)
    released = await settle(switch_api, order["id"], "release")
    net, fee = Decimal(released["netAmount"]), Decimal(released["trustlessFee"])
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
    assert delta(before, snapshot(switchable.engine, airtm, keys)) == {
        settlement: net, "platform:settlement": net, "world:airtm": -net, "world:trustless_fee": fee}
    assert await balance(switch_api, seller["id"]) == (net, 0)

    # what crypto mode refuses answers the spec's error, never a 500
    topup = await switch_api.post("/topups", {"userId": newcomer["id"], "amount": "10.00"})
    assert (topup.status, topup.error["code"]) == (422, "PROVIDER_NOT_ENABLED"), topup.body
    crypto = await switch_api.post("/withdrawals", {"userId": buyer["id"], "amount": "10.00",
                                                    "destinationType": "crypto", "destinationRef": "G" + "A" * 55})
    assert (crypto.status, crypto.error["code"]) == (422, "PROVIDER_NOT_ENABLED"), crypto.body


def escrow_accounts(engine: Engine, order_id: str) -> tuple[str | None, str | None]:
    """The escrow's treasury account (the buyer's stand-in) and the account that funded it."""
    with engine.connect() as conn:
        row = conn.execute(text("SELECT treasury_account, funder_account FROM escrows WHERE order_id = :o AND "
                                "status <> 'DISCARDED'"), {"o": order_id}).one()
    return row.treasury_account, row.funder_account


def platform_key(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT w.public_key FROM wallets w JOIN users u ON u.id = w.user_id "
                                     "WHERE u.external_user_id = 'offerhub-platform'")).scalar_one())


async def test_mixed_orders_release_and_refund_to_the_stroop(
        switch_api: Api, switchable: SwitchableInstance, airtm: AirtmControl) -> None:
    """An AIRTM-backed buyer with a WALLET-backed seller and the other way round, each released and refunded:
    every party's book, every account on the ledger and the journal's pool accounts move by exactly what the
    contract moved."""
    switchable.switch("crypto")
    wallet_buyer, wallet_buyer_key = await wallet_user(switch_api, switchable, airtm, deposit="30")
    wallet_seller, wallet_seller_key = await wallet_user(switch_api, switchable, airtm)
    switchable.switch("airtm")
    accounts = await pool_ready(switchable, airtm)
    airtm_buyer, _ = await airtm_user(switch_api, airtm, topup="30.00")
    airtm_seller, _ = await airtm_user(switch_api, airtm)
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")
    fees_to = platform_key(switchable.engine)
    keys = [*accounts, wallet_buyer_key, wallet_seller_key, fees_to]
    engine = switchable.engine
    cases = [(airtm_buyer, wallet_seller, "20.00", "release"), (airtm_buyer, wallet_seller, "10.00", "refund"),
             (wallet_buyer, airtm_seller, "20.00", "release"), (wallet_buyer, airtm_seller, "10.00", "refund")]
    for buyer, seller, amount, how in cases:
        books = {u["id"]: await balance(switch_api, u["id"]) for u in (buyer, seller)}
        before = snapshot(engine, airtm, keys)
        order = await funded_order(switch_api, buyer["id"], seller["id"], amount)
        treasury, funder = escrow_accounts(engine, order["id"])
        settled = await settle(switch_api, order["id"], how)
        gross, net = Decimal(amount), Decimal(settled["netAmount"])
        fee, platform_fee = Decimal(settled["trustlessFee"]), Decimal(settled["platformFee"])
        assert net + fee + platform_fee == gross, settled
        expected: dict[str, Decimal] = {"world:trustless_fee": fee}
        if platform_fee:
            expected[fees_to] = platform_fee
        if buyer["backing"] == "AIRTM":  # the pool funded the contract for the buyer
            assert order["fundingMode"] == "TREASURY"
            assert funder is not None
            assert treasury is not None
            expected |= {funder: -gross, "platform:treasury": -gross, "world:airtm": gross}
        else:
            assert (order["fundingMode"], funder) == ("WALLET", wallet_buyer_key)
            expected[wallet_buyer_key] = -gross
        receiver = seller if how == "release" else buyer
        if receiver["backing"] == "AIRTM":
            pool_account = settlement if how == "release" else treasury
            journal_account = "platform:settlement" if how == "release" else "platform:treasury"
            assert pool_account is not None
            expected[pool_account] = expected.get(pool_account, Decimal(0)) + net
            expected[journal_account] = expected.get(journal_account, Decimal(0)) + net
            expected["world:airtm"] = expected.get("world:airtm", Decimal(0)) - net
        else:
            key = wallet_seller_key if how == "release" else wallet_buyer_key
            expected[key] = expected.get(key, Decimal(0)) + net
        assert delta(before, snapshot(engine, airtm, keys)) == {k: v for k, v in expected.items() if v}, (how, amount)
        paid = {buyer["id"]: -gross + (net if how == "refund" else 0), seller["id"]: net if how == "release" else 0}
        for user_id, (available, reserved) in books.items():
            assert await balance(switch_api, user_id) == (available + paid[user_id], reserved), (how, user_id)


def low_events(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM outbox WHERE event_type = 'treasury.low'")).scalar() or 0)


async def pool_health(api: Api, **wanted: Any) -> dict[str, Any]:
    async def probe() -> Any:
        reply = await api.get("/health/detailed")
        found = reply.body["data"]["operations"].get("treasury")
        return found if found and all(found.get(k) == v for k, v in wanted.items()) else None

    return dict(await until(probe, f"the pool's health to show {wanted}", seconds=30))


async def test_the_scheduler_measures_the_pool_and_treasury_low_fires_once_per_crossing(
        switch_api: Api, switchable: SwitchableInstance, airtm: AirtmControl) -> None:
    """The pool (TREASURY_LOW_WATERMARK 1000 here) under the watermark, refilled, then crossed by a fund:
    /health/detailed and /metrics show its USDC, backed escrows and headroom, and ``treasury.low`` is emitted
    once per crossing however often the scheduler measures."""
    switchable.switch("airtm")
    accounts = await pool_ready(switchable, airtm)
    treasuries = [k for k, p in accounts.items() if p == "TREASURY"]
    held = sum((usdc(airtm, k) for k in treasuries), Decimal(0))
    if held >= 1000:
        pytest.skip("the pool already holds more than the watermark")  # pragma: no cover - earlier tests pay less
    found = await pool_health(switch_api, status="degraded", treasuryUsdc=f"{held:f}")
    assert Decimal(found["headroom"]) == held  # nothing is funding now
    first = low_events(switchable.engine)
    assert first >= 1
    for key in treasuries:  # the operator refills the pool over the watermark: the flag clears, no event
        airtm.sandbox.pay("issuer", key, "600")
    held += 600 * len(treasuries)
    refilled = await pool_health(switch_api, status="healthy", treasuryUsdc=f"{held:f}")
    assert Decimal(refilled["headroom"]) == held
    metrics = await switch_api.client.get("/metrics")
    body = await metrics.text()
    assert f"offerhub_treasury_headroom_usdc {float(held)}" in body, body
    assert "offerhub_treasury_low 0.0" in body
    assert low_events(switchable.engine) == first

    # a fund crosses the watermark again: one more event, however many measurements follow
    amount = (held - Decimal(1000) + Decimal("0.01")).quantize(Decimal("0.01"))
    assert amount <= max(usdc(airtm, k) for k in treasuries), "one treasury account must cover the escrow"
    buyer, _ = await airtm_user(switch_api, airtm)
    assert (await switch_api.post(f"/users/{buyer['id']}/balance/credit", {"amount": f"{amount}"})).status == 200
    seller, _ = await airtm_user(switch_api, airtm)
    order = await funded_order(switch_api, buyer["id"], seller["id"], f"{amount}")
    low = await pool_health(switch_api, status="degraded")
    assert Decimal(low["headroom"]) == held - amount
    assert low["backedEscrows"] >= 1
    await asyncio.sleep(3)  # three more measurements
    assert low_events(switchable.engine) == first + 1
    assert order["fundingMode"] == "TREASURY"
