"""Every domain event of a flow is exactly one audit entry (events.md §5), and the chain stays intact.

The flows run through the API against the sandbox's ledger and Trustless Work: an escrow released, a
dispute resolved by a split, a crypto withdrawal, a funding the contract refuses (a failed operation).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Engine, text

from orchestrator import audit
from orchestrator.db import session
from orchestrator.outbox import relay
from tests.api import Api
from tests.e2e.test_disputes import open_dispute
from tests.e2e.test_escrow_flow import funded_buyer, in_progress_order
from tests.fixtures.sandbox import SandboxControl


def events_and_entries(engine: Engine, aggregates: list[str]) -> tuple[Counter[Any], Counter[Any]]:
    """Per aggregate: each event as (type, aggregate type, id, user, correlation, actor type), and each audit
    entry written for an event, in the same shape."""
    with engine.connect() as conn:
        events = conn.execute(text(
            "SELECT event_type, aggregate_type, aggregate_id, metadata->>'userId', metadata->>'correlationId', "
            "metadata->>'actorType' FROM outbox WHERE aggregate_id = ANY(:a)"), {"a": aggregates}).all()
        entries = conn.execute(text(
            "SELECT action, resource_type, resource_id, user_id, correlation_id, actor_type FROM audit_log "
            "WHERE resource_id = ANY(:a) AND action IN (SELECT DISTINCT event_type FROM outbox)"),
            {"a": aggregates}).all()
    return Counter(map(tuple, events)), Counter(map(tuple, entries))


def assert_one_entry_per_event(engine: Engine, aggregates: list[str]) -> int:
    events, entries = events_and_entries(engine, aggregates)
    assert events, "the flow emitted events"
    assert entries == events
    return sum(events.values())


async def test_an_escrow_released_is_one_entry_per_event(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, buyer, seller, _ = await in_progress_order(api, engine, ledger, "30.00")
    released = await api.post(f"/orders/{order['id']}/resolution/release", headers={"Prefer": "wait=30"})
    assert released.data["status"] == "CLOSED", released.body
    escrow_id = released.data["escrow"]["id"]
    count = assert_one_entry_per_event(engine, [order["id"], escrow_id, buyer["id"], seller["id"]])
    assert count >= 12
    # the release's own entries carry the release request's id; the chain steps' follow-ups are SYSTEM
    with engine.connect() as conn:
        actors = set(conn.execute(text("SELECT actor_type FROM audit_log WHERE resource_id = :o"),
                                  {"o": order["id"]}).scalars())
    assert actors == {"MASTER", "SYSTEM"}


async def test_a_dispute_split_is_one_entry_per_event(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, buyer, seller, _ = await in_progress_order(api, engine, ledger, "20.00")
    dispute = await open_dispute(api, order["id"])
    assert (await api.post(f"/disputes/{dispute['id']}/assign", {"assignedTo": "agent-1"})).status == 200
    resolved = await api.post(f"/disputes/{dispute['id']}/resolve",
                              {"decision": "SPLIT", "releaseAmount": "15.00", "refundAmount": "5.00"},
                              headers={"Prefer": "wait=30"})
    assert resolved.status == 200, resolved.body
    escrow_id = (await api.get(f"/orders/{order['id']}")).data["escrow"]["id"]
    assert_one_entry_per_event(engine, [order["id"], escrow_id, dispute["id"], buyer["id"], seller["id"]])


async def test_a_withdrawal_is_one_entry_per_event(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    user, _ = await funded_buyer(api, engine, ledger, "25.00")
    outside = ledger.create_account(usdc_trustline=True)
    reply = await api.post("/withdrawals", {"userId": user["id"], "amount": "12.00", "destinationType": "crypto",
                                            "destinationRef": outside["publicKey"]}, headers={"Prefer": "wait=30"})
    assert reply.data["status"] == "WITHDRAWAL_COMPLETED", reply.body
    assert_one_entry_per_event(engine, [reply.data["id"], user["id"]])
    # the user's statement names the deposit's ledger hash and the withdrawal behind each movement
    statement = (await api.get(f"/users/{user['id']}/statement")).data
    deposit, withdrawal = statement["movements"]
    with engine.connect() as conn:
        tx_hash = conn.execute(text("SELECT tx_hash FROM deposits WHERE user_id = :u"), {"u": user["id"]}).scalar_one()
    assert (deposit["kind"], deposit["depositHash"], deposit["amount"]) == ("deposit", tx_hash, "25.00")
    assert (withdrawal["withdrawalId"], withdrawal["amount"]) == (reply.data["id"], "-12.00")
    assert statement["closingBalance"]["total"] == "13.00"
    assert statement["matchesBalance"] is True


async def test_the_chain_verifies_after_the_flows(api: Api, engine: Engine) -> None:
    """The whole chain verifies, whichever tests ran before; these users' entries are surely in it."""
    users = [await api.user() for _ in range(20)]
    relay.relay(engine)
    with engine.connect() as conn:
        # one snapshot, as `offerhub audit verify` reads it: the session's worker threads keep relaying,
        # and at READ COMMITTED a pass committing mid-walk chained entries past the head read first
        conn.exec_driver_sql(session.SNAPSHOT)
        found = audit.verify(conn)
        chained = conn.execute(text("SELECT count(*) FROM audit_log WHERE resource_id = ANY(:ids) "
                                    "AND position IS NOT NULL"), {"ids": [u["id"] for u in users]}).scalar_one()
    assert found.ok, found.problem
    assert chained >= 20
    assert found.checked >= chained
