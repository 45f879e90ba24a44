"""Disputes through the API: open, assign, resolve each way on the ledger, both books following."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from tests.api import Api
from tests.e2e.test_escrow_flow import in_progress_order, usdc
from tests.fixtures.sandbox import SandboxControl


async def open_dispute(api: Api, order_id: str) -> dict:
    opened = await api.post(f"/orders/{order_id}/resolution/dispute", {"openedBy": "BUYER", "reason": "QUALITY_ISSUE"})
    assert opened.status == 201, opened.body
    return opened.data


def event_types(engine: Engine, *aggregates: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT event_type FROM outbox WHERE aggregate_id = ANY(:a) ORDER BY id"),
                                 {"a": list(aggregates)}).scalars())


async def test_a_dispute_freezes_the_order_and_a_split_pays_both_parties_what_the_contract_paid(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, buyer, seller, wallets = await in_progress_order(api, engine, ledger, "100.00")
    dispute = await open_dispute(api, order["id"])
    assert (dispute["status"], dispute["order"]["status"]) == ("OPEN", "DISPUTED")
    frozen = await api.post(f"/orders/{order['id']}/resolution/release")
    assert (frozen.status, frozen.error["code"]) == (409, "DISPUTE_ALREADY_OPEN")
    second = await api.post(f"/orders/{order['id']}/resolution/dispute", {"openedBy": "SELLER", "reason": "OTHER"})
    assert (second.status, second.error["code"]) == (409, "DISPUTE_ALREADY_OPEN")

    assigned = await api.post(f"/disputes/{dispute['id']}/assign", {"assignedTo": "agent-7", "notes": "looking"})
    assert assigned.data["status"] == "UNDER_REVIEW"
    mismatch = await api.post(f"/disputes/{dispute['id']}/resolve",
                              {"decision": "SPLIT", "releaseAmount": "70.00", "refundAmount": "20.00"})
    assert mismatch.status == 400
    assert mismatch.error["details"]["fields"][0]["code"] == "SPLIT_SUM_MISMATCH"
    assert mismatch.error["details"]["expectedTotal"] == "100.00"

    resolved = await api.post(f"/disputes/{dispute['id']}/resolve",
                              {"decision": "SPLIT", "releaseAmount": "80.00", "refundAmount": "20.00",
                               "note": "80% of work delivered"}, headers={"Prefer": "wait=30"})
    assert resolved.status == 200, resolved.body
    assert (resolved.data["status"], resolved.data["resolutionDecision"]) == ("RESOLVED", "SPLIT")
    assert (resolved.data["order"]["status"], resolved.data["order"]["finalStatus"]) == ("CLOSED", "RELEASED")
    # 0.3 % of each share stays with Trustless Work; book and wallets agree to the cent
    assert usdc(ledger, wallets["public_key"]) == Decimal("79.76")
    assert (await api.balance(seller["id"]))["available"] == "79.76"
    settlement = resolved.data["settlement"]
    assert (settlement["grossAmount"], settlement["trustlessFee"], settlement["netAmount"]) == (
        "100.00", "0.30", "99.70")
    assert {d["role"]: (d["grossAmount"], d["netAmount"]) for d in settlement["distributions"]} == {
        "seller": ("80.00", "79.76"), "buyer": ("20.00", "19.94")}
    assert usdc(ledger, wallets["buyer_public_key"]) == Decimal("19.94")
    assert (await api.balance(buyer["id"]))["available"] == "19.94"
    escrow_id = (await api.get(f"/orders/{order['id']}")).data["escrow"]["id"]
    types = event_types(engine, order["id"], dispute["id"], escrow_id, buyer["id"], seller["id"])
    # events.md §4, "Resolve SPLIT"
    assert types[types.index("dispute.under_review") + 1:] == [
        "order.release_requested", "escrow.released", "balance.credited", "balance.credited", "order.released",
        "order.closed", "dispute.resolved"]


@pytest.mark.parametrize(("decision", "seller_gets", "buyer_gets", "final"), [
    ("FULL_RELEASE", "39.88", "0.00", "RELEASED"),
    ("FULL_REFUND", "0.00", "39.88", "REFUNDED"),
])
async def test_a_full_decision_pays_one_side_and_closes_the_order(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None, decision: str, seller_gets: str,
        buyer_gets: str, final: str) -> None:
    order, buyer, seller, _ = await in_progress_order(api, engine, ledger, "40.00")
    dispute = await open_dispute(api, order["id"])
    forbidden = await api.post(f"/disputes/{dispute['id']}/resolve", {"decision": decision, "releaseAmount": "1.00"})
    assert forbidden.error["details"]["fields"][0]["code"] == "FORBIDDEN_FOR_DECISION"
    resolved = await api.post(f"/disputes/{dispute['id']}/resolve", {"decision": decision},
                              headers={"Prefer": "wait=30"})
    assert resolved.status == 200, resolved.body
    assert resolved.data["order"]["finalStatus"] == final
    assert (await api.balance(seller["id"]))["available"] == seller_gets
    assert (await api.balance(buyer["id"]))["available"] == buyer_gets
    again = await api.post(f"/disputes/{dispute['id']}/resolve", {"decision": decision})
    assert (again.status, again.error["code"]) == (409, "INVALID_STATE_TRANSITION")
    listed = await api.get(f"/disputes?orderId={order['id']}")
    assert [d["id"] for d in listed.data] == [dispute["id"]]
