"""Escrow flows under the sandbox's injected faults: each completes exactly once or fails visibly.

A submission fault is aimed where a Trustless Work envelope goes under ``TRUSTLESS_SUBMIT_VIA`` (TW's T8
relay, or Horizon's submit: `tw_submissions`), at the n-th submission after it is added, with pass-through
`delay 0` rules in front and a counting `delay 0` rule behind it (its firings are the submissions that
followed the fault). The escrow steps are the only submissions there while a test runs, so the n-th is the
n-th step of the flow in both modes.

The run keeps the product's Trustless Work budget (45 calls a minute, shared through Redis): the fast tests
stay under it; the slow 429 test waits out the full minute the product blocks after a 429.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import dramatiq
import pytest
from sqlalchemy import Engine, text
from stellar_sdk import BumpSequence, TransactionEnvelope

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import commands as commands_db
from orchestrator.settings import Settings
from tests.api import Api, Reply
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_escrow_flow import funded_buyer, in_progress_order, usdc
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues
from tests.fixtures.sandbox import SandboxControl, submitted_hash, tw_submissions

WAIT = {"Prefer": "wait=30"}
pytestmark = pytest.mark.usefixtures("monitor")  # every test needs deposits credited
IN_FLIGHT = ("CREATING", "FUNDING", "RELEASING", "REFUNDING")
FINAL = ("IN_PROGRESS", "CLOSED", "ESCROW_CREATING", "FUNDS_RESERVED")


def fault_on_submission(ledger: SandboxControl, settings: Settings, n: int, action: str,
                        **params: Any) -> tuple[str, str]:
    """Make the ``n``-th next submission of a TW envelope misbehave (where the configured mode sends it);
    returns (fault rule id, counter rule id)."""
    submit = tw_submissions(settings)
    if n > 1:
        ledger.add_fault(**submit, action="delay", params={"ms": 0}, times=n - 1)
    fault = ledger.add_fault(**submit, action=action, params=params, times=1)
    counter = ledger.add_fault(**submit, action="delay", params={"ms": 0}, times=0)
    return fault["id"], counter["id"]


def firings(ledger: SandboxControl, rule_id: str) -> list[dict[str, Any]]:
    return [entry for entry in ledger.fault_log() if entry["rule"] == rule_id]


def steps(engine: Engine, order_id: str) -> list[dict[str, Any]]:
    """The order's chain step rows, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, kind, status, tx_hash, sequence, attempts, last_error, params, max_time FROM chain_steps "
            "WHERE params->>'orderId' = :o ORDER BY created_at, id"), {"o": order_id}).mappings().all()
    return [dict(row) for row in rows]


def step(engine: Engine, order_id: str, kind: str) -> dict[str, Any]:
    found = [row for row in steps(engine, order_id) if row["kind"] == kind]
    assert len(found) == 1, steps(engine, order_id)
    return found[0]


def refused(engine: Engine, order_id: str, kind: str, code: str, times: int = 2) -> bool:
    """Whether the order's ``kind`` step exists and has been refused ``times`` times with ``code``."""
    found = [row for row in steps(engine, order_id) if row["kind"] == kind]
    return bool(found) and found[0]["attempts"] >= times and code in (found[0]["last_error"] or "")


def events(engine: Engine, order_id: str, event_type: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT payload FROM outbox WHERE aggregate_id = :o AND event_type = :t "
                                      "ORDER BY id"), {"o": order_id, "t": event_type}).scalars().all())


def transaction(ledger: SandboxControl, tx_hash: str) -> dict[str, Any]:
    reply = ledger.http.get(f"{ledger.horizon_url}/transactions/{tx_hash}", timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()


def contract_balance(ledger: SandboxControl, contract_id: str) -> Decimal:
    reply = ledger.http.get(f"{ledger.trustless_url}/helper/get-escrow-by-contract-ids",
                            params={"contractIds": contract_id, "validateOnChain": "true"},
                            headers={"x-api-key": "sandbox-tw-key"}, timeout=10)
    assert reply.status_code == 200, reply.text
    return Decimal(str(reply.json()[0]["balance"]))


async def settled(api: Api, reply: Reply, order_id: str, seconds: float = 90) -> dict[str, Any]:
    """The order once its flow is over: the answer itself, or (after a 202) the order polled until final."""
    assert reply.status in (200, 202), reply.body
    if reply.status == 200:
        return reply.data
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        order = (await api.get(f"/orders/{order_id}")).data
        if order["status"] in FINAL and (order["escrow"] or {}).get("status") not in IN_FLIGHT:
            return order
        await asyncio.sleep(0.25)
    raise AssertionError(f"order {order_id} did not settle: {order['status']} / {steps_note(order_id)}")


def steps_note(order_id: str) -> str:
    return f"see chain_steps WHERE params->>'orderId' = '{order_id}'"


async def wait_until(predicate: Any, seconds: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def escrowed_order(api: Api, engine: Engine, ledger: SandboxControl, *, wallet: str = "100.00",
                         amount: str = "40.00") -> tuple[dict[str, Any], ...]:
    """A buyer holding more USDC than the order (so a second fund would show), the contract deployed."""
    buyer, buyer_wallet = await funded_buyer(api, engine, ledger, wallet)
    seller, seller_wallet = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": amount,
                                        "title": "Faulty"})).data
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    # (a 202 only when the run's shared TW budget of 45 calls a minute is spent)
    created = await settled(api, await api.post(f"/orders/{order['id']}/escrow", headers=WAIT), order["id"])
    assert created["escrow"]["status"] == "CREATED"
    return created, buyer, buyer_wallet, seller, seller_wallet


async def assert_funded_once(api: Api, ledger: SandboxControl, order: dict[str, Any], buyer: dict[str, Any],
                             buyer_key: str, *, wallet: str = "100.00", amount: str = "40.00") -> None:
    """The contract holds the amount once; the buyer's wallet and book both show one debit."""
    left = Decimal(wallet) - Decimal(amount)
    assert usdc(ledger, buyer_key) == left
    assert contract_balance(ledger, order["escrow"]["trustlessContractId"]) == Decimal(amount)
    book = await api.balance(buyer["id"])
    assert (Decimal(book["available"]), Decimal(book["reserved"])) == (left, Decimal(0))


async def assert_released_once(api: Api, ledger: SandboxControl, order: dict[str, Any], seller: dict[str, Any],
                               seller_key: str, net: str) -> None:
    assert (order["status"], order["finalStatus"]) == ("CLOSED", "RELEASED")
    assert usdc(ledger, seller_key) == Decimal(net)
    assert Decimal((await api.balance(seller["id"]))["available"]) == Decimal(net)
    assert contract_balance(ledger, order["escrow"]["trustlessContractId"]) == 0


@pytest.mark.parametrize("action", ["apply_then_drop", "apply_then_error"])
async def test_a_fund_and_a_release_that_landed_but_lost_their_answer_are_looked_up_and_paid_once(
        action: str, api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    order, buyer, buyer_wallet, seller, seller_wallet = await escrowed_order(api, engine, ledger)
    try:
        fault, after = fault_on_submission(ledger, settings, 1, action)
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
        assert funded["status"] == "IN_PROGRESS"
        assert len(firings(ledger, fault)) == 1
        # the hash was found in history: the envelope was never sent again
        assert firings(ledger, after) == []
        fund = step(engine, order["id"], "tw_fund")
        assert (fund["status"], fund["attempts"]) == ("CONFIRMED", 1)
        assert transaction(ledger, fund["tx_hash"])["successful"] is True
        await assert_funded_once(api, ledger, funded, buyer, buyer_wallet["public_key"])
        ledger.clear_faults()

        # the release's third transaction (release_funds) lands and loses its answer
        fault, after = fault_on_submission(ledger, settings, 3, action)
        released = await settled(api, await api.post(f"/orders/{order['id']}/resolution/release", headers=WAIT),
                                 order["id"])
        assert len(firings(ledger, fault)) == 1
        assert firings(ledger, after) == []
    finally:
        ledger.clear_faults()
    kinds = [(s["kind"], s["status"], s["attempts"]) for s in steps(engine, order["id"])]
    assert kinds[2:] == [("tw_change_status", "CONFIRMED", 0), ("tw_approve", "CONFIRMED", 0),
                         ("tw_release", "CONFIRMED", 1), ("tw_settle", "CONFIRMED", 0)]
    await assert_released_once(api, ledger, released, seller, seller_wallet["public_key"], "39.88")
    assert len(events(engine, order["id"], "order.released")) == 1
    assert events(engine, order["id"], "order.operation_failed") == []


async def test_submissions_that_time_out_unapplied_are_resubmitted_unchanged_and_land_once(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    # the fault's `ms` holds the connection 0.3 s, not the client's 35 s, then closes it unapplied
    order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    try:
        fault, after = fault_on_submission(ledger, settings, 1, "timeout", ms=300)
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
        assert funded["status"] == "IN_PROGRESS"
        assert len(firings(ledger, fault)) == 1
        assert len(firings(ledger, after)) == 1  # the same envelope, once more
        fund = step(engine, order["id"], "tw_fund")
        assert (fund["status"], fund["attempts"]) == ("CONFIRMED", 1)
        assert int(transaction(ledger, fund["tx_hash"])["source_account_sequence"]) == fund["sequence"]
        await assert_funded_once(api, ledger, funded, buyer, buyer_wallet["public_key"])
        ledger.clear_faults()

        # the refund's second transaction (resolve_dispute, signed by the platform) times out unapplied
        fault, after = fault_on_submission(ledger, settings, 2, "timeout", ms=300)
        refunded = await settled(api, await api.post(f"/orders/{order['id']}/resolution/refund",
                                                     {"reason": "faults"}, headers=WAIT), order["id"])
        assert len(firings(ledger, fault)) == 1
        assert len(firings(ledger, after)) == 1
    finally:
        ledger.clear_faults()
    assert (refunded["status"], refunded["finalStatus"]) == ("CLOSED", "REFUNDED")
    resolve = step(engine, order["id"], "tw_resolve")
    assert (resolve["status"], resolve["attempts"]) == ("CONFIRMED", 1)
    # 40 back less TW's 0.3 %: 60 + 39.88 in the wallet and in the book
    assert usdc(ledger, buyer_wallet["public_key"]) == Decimal("99.88")
    assert (await api.balance(buyer["id"]))["available"] == "99.88"
    assert len(events(engine, order["id"], "order.refunded")) == 1


async def test_a_fund_whose_sequence_was_taken_is_rebuilt_and_applied_once(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    before = int(ledger.http.get(f"{ledger.horizon_url}/accounts/{buyer_wallet['public_key']}").json()["sequence"])
    try:
        fault, after = fault_on_submission(ledger, settings, 1, "bad_seq")
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
        assert len(firings(ledger, fault)) == 1
        assert len(firings(ledger, after)) == 1  # one new envelope, no resubmission of the dead one
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    fund = step(engine, order["id"], "tw_fund")
    assert (fund["status"], fund["attempts"]) == ("CONFIRMED", 1)
    # the first envelope had before+1, which the injected transaction took; the rebuilt one has before+2
    assert fund["sequence"] == before + 2
    assert transaction(ledger, fund["tx_hash"])["successful"] is True
    await assert_funded_once(api, ledger, funded, buyer, buyer_wallet["public_key"])


async def test_a_fund_priced_out_by_a_fee_surge_is_rebuilt_at_trustless_works_fee_and_lands_once_the_surge_ends(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    # TW's envelopes bid 100 000 stroops; a surge to 200 000 refuses them with tx_insufficient_fee. The engine
    # does not (cannot) change a TW envelope's fee: it rebuilds through TW until the price comes back down.
    order, _, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    try:
        ledger.add_fault(service="horizon", action="surge", params={"stroops": 200_000, "ledgers": 1}, times=1)
        started = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "respond-async"})
        assert started.status == 202, started.body
        await wait_until(lambda: refused(engine, order["id"], "tw_fund", "tx_insufficient_fee", times=1),
                         what="the fund to be refused for its fee")
        during = (await api.get(f"/orders/{order['id']}")).data
        assert (during["status"], during["escrow"]["status"]) == ("ESCROW_FUNDING", "FUNDING")
        assert usdc(ledger, buyer_wallet["public_key"]) == Decimal("100")
        # another transaction closes a ledger: the surge (one ledger long) is over
        ledger.pay("issuer", buyer_wallet["public_key"], "0.0000001")
        funded = await settled(api, Reply(202, None, None), order["id"])
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    fund = step(engine, order["id"], "tw_fund")
    assert fund["status"] == "CONFIRMED"
    record = transaction(ledger, fund["tx_hash"])
    assert int(record["max_fee"]) == 100_000
    assert usdc(ledger, buyer_wallet["public_key"]) == Decimal("60.0000001")
    assert contract_balance(ledger, funded["escrow"]["trustlessContractId"]) == Decimal("40")
    assert events(engine, order["id"], "order.operation_failed") == []


async def test_a_fund_from_a_wallet_drained_of_xlm_keeps_its_envelope_and_lands_once_when_xlm_arrives(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    key = buyer_wallet["public_key"]
    try:
        fault, _ = fault_on_submission(ledger, settings, 1, "drain_xlm")
        started = await api.post(f"/orders/{order['id']}/escrow/fund", headers={"Prefer": "respond-async"})
        assert started.status == 202, started.body
        await wait_until(lambda: refused(engine, order["id"], "tw_fund", "tx_insufficient_balance"),
                         what="the fund to be refused for want of XLM")
        waiting = step(engine, order["id"], "tw_fund")
        assert waiting["status"] == "SIGNED"
        # no money moved, nothing rolled back: the order waits in ESCROW_FUNDING
        during = (await api.get(f"/orders/{order['id']}")).data
        assert (during["status"], during["escrow"]["status"]) == ("ESCROW_FUNDING", "FUNDING")
        assert usdc(ledger, key) == Decimal("100")
        # XLM arrives (here from an outside account: the product does not top the wallet up itself)
        donor = ledger.create_account(usdc_trustline=False, xlm="50")
        ledger.pay(donor["secret"], key, "5", asset="XLM")
        funded = await settled(api, Reply(202, None, None), order["id"])
        assert len(firings(ledger, fault)) == 1
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    fund = step(engine, order["id"], "tw_fund")
    assert fund["status"] == "CONFIRMED"
    assert fund["tx_hash"] == waiting["tx_hash"]  # the very envelope signed before the drain
    await assert_funded_once(api, ledger, funded, buyer, key)
    assert events(engine, order["id"], "order.operation_failed") == []


async def test_a_release_refused_by_the_contract_rolls_back_before_any_step_landed_and_retries_after(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    order, buyer, seller, wallets = await in_progress_order(api, engine, ledger, "40.00")
    try:
        # the first transaction (change_milestone_status) traps: nothing landed, so O13 rolls back
        fault, _ = fault_on_submission(ledger, settings, 1, "contract_reject")
        refused = await api.post(f"/orders/{order['id']}/resolution/release", headers=WAIT)
        assert len(firings(ledger, fault)) == 1
        assert refused.status >= 400, refused.body
        assert refused.error["code"] == "PROVIDER_ERROR"
        back = (await api.get(f"/orders/{order['id']}")).data
        assert (back["status"], back["escrow"]["status"]) == ("IN_PROGRESS", "FUNDED")
        failed = events(engine, order["id"], "order.operation_failed")
        assert [(e["operation"], e["status"], e["retrying"]) for e in failed] == [("release", "IN_PROGRESS", False)]
        assert usdc(ledger, wallets["public_key"]) == 0
        ledger.clear_faults()

        # the third (release_funds) traps after two landed: no rollback, the step is tried again
        fault, _ = fault_on_submission(ledger, settings, 3, "contract_reject")
        released = await settled(api, await api.post(f"/orders/{order['id']}/resolution/release", headers=WAIT),
                                 order["id"])
        assert len(firings(ledger, fault)) == 1
    finally:
        ledger.clear_faults()
    failed = events(engine, order["id"], "order.operation_failed")
    assert [(e["operation"], e["status"], e["retrying"]) for e in failed] == [
        ("release", "IN_PROGRESS", False), ("release", "RELEASE_REQUESTED", True)]
    kinds = [(s["kind"], s["status"]) for s in steps(engine, order["id"])]
    assert kinds[2:] == [("tw_change_status", "FAILED"), ("tw_change_status", "CONFIRMED"),
                         ("tw_approve", "CONFIRMED"), ("tw_release", "FAILED"), ("tw_release", "CONFIRMED"),
                         ("tw_settle", "CONFIRMED")]
    await assert_released_once(api, ledger, released, seller, wallets["public_key"], "39.88")
    book = await api.balance(buyer["id"])
    assert (book["available"], book["reserved"]) == ("0.00", "0.00")


async def test_escrow_creation_never_waits_for_trustless_works_indexer(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    """The contract id is derived from the signed deploy (decision 17): an indexer that never shows the
    contract changes nothing (the old code polled T10 25 times and rolled the order back)."""
    buyer, _ = await funded_buyer(api, engine, ledger, "10.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                        "title": "Lagging"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    try:
        ledger.add_fault(service="trustless", action="indexer_lag", params={"seconds": 3600}, times=0)
        created = await settled(api, await api.post(f"/orders/{order['id']}/escrow", headers=WAIT), order["id"],
                                seconds=30)
    finally:
        ledger.clear_faults()
    assert created["escrow"]["status"] == "CREATED", steps_note(order["id"])
    contract = created["escrow"]["trustlessContractId"]
    on_ledger = ledger.state()["contracts"][contract]
    assert on_ledger["engagement_id"] == order["id"]
    deploy = step(engine, order["id"], "tw_deploy")
    assert deploy["params"]["contractId"] == contract  # stored with the signed envelope
    assert not [s for s in steps(engine, order["id"]) if s["kind"] == "tw_find_contract"]
    assert len(events(engine, created["escrow"]["id"], "escrow.created")) == 1


async def test_a_rejected_api_key_fails_the_escrow_at_once_with_trustless_works_message(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    """401 is permanent (providers.md §1.11): one call, then the flow fails visibly (it used to count as
    one of 25 attempts, so a wrong key surfaced after about ten minutes)."""
    buyer, _ = await funded_buyer(api, engine, ledger, "10.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                        "title": "Wrong key"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    try:
        rule = ledger.add_fault(service="trustless", method="POST", path="/deployer/single-release",
                                action="status", params={"status": 401, "message": "Unauthorized: invalid x-api-key"},
                                times=0)
        started = time.monotonic()
        reply = await api.post(f"/orders/{order['id']}/escrow", headers=WAIT)
        elapsed = time.monotonic() - started
        after = (await api.get(f"/orders/{order['id']}")).data
        calls = firings(ledger, rule["id"])
    finally:
        ledger.clear_faults()
    assert (reply.status, reply.error["code"]) == (502, "PROVIDER_ERROR"), reply.body
    assert "invalid x-api-key" in reply.error["message"]
    assert after["status"] == "FUNDS_RESERVED", steps_note(order["id"])
    assert len(calls) == 1
    assert elapsed < 15
    deploy = step(engine, order["id"], "tw_deploy")
    assert (deploy["status"], deploy["attempts"]) == ("FAILED", 0)
    assert "invalid x-api-key" in deploy["last_error"]
    (failed,) = events(engine, order["id"], "order.operation_failed")
    assert failed["errorCode"] == "PROVIDER_ERROR"
    assert "invalid x-api-key" in failed["reason"]


async def test_unbounded_trustless_envelopes_are_signed_and_the_flows_complete(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    """TW's time bounds are not documented: envelopes with max_time 0 are signed (they used to be refused)."""
    try:
        ledger.add_fault(service="trustless", action="unbounded_envelopes", path="*", times=0)
        created, _buyer, _, _seller, _ = await escrowed_order(api, engine, ledger)
        order = created
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS", steps_note(order["id"])
    fund = step(engine, order["id"], "tw_fund")
    assert fund["max_time"] is None


def ledger_transactions(ledger: SandboxControl, source: str) -> list[tuple[dict[str, Any], TransactionEnvelope]]:
    """The sandbox's most recent transactions of one source account, with their decoded envelopes."""
    recent = ledger.state()["transactions"]["recent"]
    return [(record, TransactionEnvelope.from_xdr(record["envelope_xdr"], ledger.passphrase))
            for record in recent if record["source_account"] == source]


async def test_an_unbounded_fund_priced_out_is_rebuilt_only_after_a_bump_sequence_of_its_source_landed(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    """DESIGN decision 22: a fund envelope without an upper time bound, refused for its fee, could still land
    later (TW's relay holds it), so it is dead only once its sequence number is spent. The engine lands a
    `bump_sequence` to that number from the same source first, then builds the fund again; the first envelope
    never lands and the money moves once."""
    submit = tw_submissions(settings)
    try:
        ledger.add_fault(service="trustless", action="unbounded_envelopes", path="/escrow/single-release/fund-escrow",
                         times=0)
        order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
        key = buyer_wallet["public_key"]
        before = int(ledger.http.get(f"{ledger.horizon_url}/accounts/{key}").json()["sequence"])
        funds = ledger.add_fault(**submit, when={"function": "fund_escrow", "source": key}, action="delay",
                                 params={"ms": 0}, times=0)["id"]
        # a surge to 1 000 stroops an operation for one ledger: TW's envelope bids 100 (its fee less the resource
        # fee), our bump_sequence bids the network's base fee, so only the bump gets in (and closes the ledger)
        ledger.add_fault(service="horizon", action="surge", params={"stroops": 1000, "ledgers": 1}, times=1)
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
        sent = [submitted_hash(entry) for entry in firings(ledger, funds)]
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS", steps_note(order["id"])
    fund = step(engine, order["id"], "tw_fund")
    assert (fund["status"], fund["max_time"]) == ("CONFIRMED", None)
    first, rebuilt = sent[0], sent[-1]
    assert first != rebuilt == fund["tx_hash"]
    assert sent.count(first) == 1  # refused once, then consumed: never resubmitted once dead
    # the first envelope (sequence before+1) never landed: a bump_sequence of the buyer's own took its number
    assert ledger.http.get(f"{ledger.horizon_url}/transactions/{first}", timeout=10).status_code == 404
    ours = ledger_transactions(ledger, key)
    bumps = [(record, envelope) for record, envelope in ours
             if isinstance(envelope.transaction.operations[0], BumpSequence)]
    assert len(bumps) == 1, [record["hash"] for record, _ in ours]
    bump_record, bump = bumps[0]
    assert bump_record["successful"] is True
    operation = bump.transaction.operations[0]
    assert isinstance(operation, BumpSequence)
    assert operation.bump_to == before + 1
    # ... before the fund was built again: the rebuilt envelope has the next number and a later ledger
    landed = transaction(ledger, fund["tx_hash"])
    assert fund["sequence"] == int(landed["source_account_sequence"]) == before + 2
    assert bump_record["ledger"] < landed["ledger"]
    await assert_funded_once(api, ledger, funded, buyer, key)
    assert events(engine, order["id"], "order.operation_failed") == []


async def test_trustless_work_503s_on_the_build_endpoints_are_retried_and_the_flows_complete(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    buyer, buyer_wallet = await funded_buyer(api, engine, ledger, "100.00")
    seller, _ = await active_wallet(api, engine)
    order = (await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "40.00",
                                        "title": "Unavailable"})).data
    await api.post(f"/orders/{order['id']}/reserve")
    try:
        deploy = ledger.add_fault(service="trustless", method="POST", path="/deployer/single-release",
                                  action="status", params={"status": 503}, times=1)
        fund = ledger.add_fault(service="trustless", method="POST", path="/escrow/single-release/fund-escrow",
                                when={"signer": buyer_wallet["public_key"]}, action="status",
                                params={"status": 503}, times=1)
        created = await settled(api, await api.post(f"/orders/{order['id']}/escrow", headers=WAIT), order["id"])
        assert created["escrow"]["status"] == "CREATED"
        funded = await settled(api, await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT), order["id"])
        assert (len(firings(ledger, deploy["id"])), len(firings(ledger, fund["id"]))) == (1, 1)
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    await assert_funded_once(api, ledger, funded, buyer, buyer_wallet["public_key"])
    assert [s["status"] for s in steps(engine, order["id"])] == ["CONFIRMED"] * 2  # deploy, fund


@pytest.mark.slow
async def test_a_trustless_work_429_on_a_build_waits_out_the_shared_budget_and_the_flow_completes(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    # the product marks the whole rolling minute used after a 429 (whatever Retry-After says): about 60 s
    order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    try:
        limited = ledger.add_fault(service="trustless", method="POST", path="/escrow/single-release/fund-escrow",
                                   when={"signer": buyer_wallet["public_key"]}, action="status",
                                   params={"status": 429, "retry_after": 1}, times=1)
        reply = await api.post(f"/orders/{order['id']}/escrow/fund", headers=WAIT)
        funded = await settled(api, reply, order["id"], seconds=120)
        assert len(firings(ledger, limited["id"])) == 1
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    await assert_funded_once(api, ledger, funded, buyer, buyer_wallet["public_key"])
    assert events(engine, order["id"], "order.operation_failed") == []


@pytest.fixture
def chain_prefix(settings: Settings) -> Iterator[str]:
    """A queue prefix of its own: the in-process worker never sees these commands or chain steps."""
    prefix = f"{settings.queue_prefix}escfault_"
    yield prefix
    delete_queues(settings, prefix)


@pytest.mark.slow
async def test_a_chain_worker_killed_while_its_fund_is_in_flight_confirms_the_landed_envelope_once_after_restart(
        api: Api, engine: Engine, ledger: SandboxControl, broker: dramatiq.Broker, chain_prefix: str,
        settings: Settings) -> None:
    order, buyer, buyer_wallet, *_ = await escrowed_order(api, engine, ledger)
    key = buyer_wallet["public_key"]
    command_id = ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(commands_db.insert(id=command_id, kind=Kind.FUND_ESCROW, payload={"orderId": order["id"]},
                                        actor_type="MASTER", actor_id="master", request_id="escrow-faults",
                                        idempotency_key=None))
    worker = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "2",
              "--queues", f"{chain_prefix}commands", f"{chain_prefix}chain")
    try:
        # the submission is held 3 s by Horizon before it applies: the worker dies while it waits
        fault, after = fault_on_submission(ledger, settings, 1, "delay", ms=3000)
        with processes.process(*worker, QUEUE_PREFIX=chain_prefix) as first:
            broker.enqueue(dramatiq.Message(queue_name=f"{chain_prefix}commands", actor_name="execute_command",
                                            args=(command_id,), kwargs={}, options={}))
            await wait_until(lambda: len(firings(ledger, fault)) == 1, what="the fund submission to reach Horizon")
            signed = step(engine, order["id"], "tw_fund")
            assert signed["status"] == "SIGNED"  # envelope and hash were stored before the submission
            processes.kill(first)
        # the envelope lands with nobody listening
        await wait_until(lambda: usdc(ledger, key) == Decimal("60"), what="the held envelope to land")
        assert step(engine, order["id"], "tw_fund")["status"] == "SIGNED"
        with processes.process(*worker, QUEUE_PREFIX=chain_prefix):
            funded = await settled(api, Reply(202, None, None), order["id"], seconds=60)
        assert firings(ledger, after) == []  # found by its hash: never sent again
    finally:
        ledger.clear_faults()
    assert funded["status"] == "IN_PROGRESS"
    fund = step(engine, order["id"], "tw_fund")
    assert (fund["status"], fund["tx_hash"]) == ("CONFIRMED", signed["tx_hash"])
    await assert_funded_once(api, ledger, funded, buyer, key)
    assert len(events(engine, order["id"], "order.in_progress")) == 1
