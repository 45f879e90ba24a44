"""The monitor under faults: killed, doubled, or resuming from a cursor Horizon no longer keeps."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from sqlalchemy import Engine, text

from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.fixtures import processes
from tests.fixtures.processes import following
from tests.fixtures.sandbox import SandboxControl

pytestmark = pytest.mark.slow


def credits(engine: Engine, user_ids: list[str]) -> Counter:
    """balance.credited events per (user, transaction hash)."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT aggregate_id, payload->>'transactionHash' FROM outbox "
            "WHERE event_type = 'balance.credited' AND aggregate_id = ANY(:ids)"), {"ids": user_ids}).all()
    return Counter((user, tx) for user, tx in rows)


async def wait_credits(engine: Engine, user_ids: list[str], total: int, seconds: float = 60) -> Counter:
    deadline = time.monotonic() + seconds
    while sum((counted := credits(engine, user_ids)).values()) < total:
        assert time.monotonic() < deadline, f"{sum(counted.values())} of {total} credited"
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # anything credited twice would show up now
    return credits(engine, user_ids)


async def test_deposits_paid_while_the_monitor_was_killed_are_credited_once_after_restart(
        api: Api, engine: Engine, ledger: SandboxControl, worker: object) -> None:
    people = [await active_wallet(api, engine) for _ in range(5)]
    ids = [user["id"] for user, _ in people]
    # Given a monitor that followed the stream and was then killed with SIGKILL
    with processes.process("-m", "orchestrator", "monitor") as first:
        processes.wait_for(lambda: following(engine), what="the monitor to follow")
        await asyncio.sleep(0.5)
        processes.kill(first)
    # When 50 deposits land while no monitor runs
    paid = [ledger.pay("issuer", wallet["public_key"], "2.00")["hash"]
            for _ in range(10) for _, wallet in people]
    # Then a restarted monitor credits each of them exactly once
    with processes.process("-m", "orchestrator", "monitor"):
        counted = await wait_credits(engine, ids, 50)
    assert sorted(tx for _, tx in counted) == sorted(paid)
    assert set(counted.values()) == {1}
    for user_id in ids:
        assert (await api.balance(user_id))["available"] == "20.00"


async def test_two_monitors_credit_each_deposit_once_and_a_standby_takes_over(
        api: Api, engine: Engine, ledger: SandboxControl, worker: object) -> None:
    people = [await active_wallet(api, engine) for _ in range(2)]
    ids = [user["id"] for user, _ in people]
    with processes.process("-m", "orchestrator", "monitor") as one, processes.process("-m", "orchestrator", "monitor"):
        processes.wait_for(lambda: following(engine), what="a monitor to follow")
        for _ in range(10):
            for _, wallet in people:
                ledger.pay("issuer", wallet["public_key"], "1.00")
        await wait_credits(engine, ids, 20)
        # whichever led, killing one leaves the other to carry on within seconds
        processes.kill(one)
        for _ in range(5):
            for _, wallet in people:
                ledger.pay("issuer", wallet["public_key"], "1.00")
        counted = await wait_credits(engine, ids, 30)
    assert set(counted.values()) == {1}
    assert len(counted) == 30


async def test_a_cursor_older_than_history_falls_back_to_per_wallet_reconciliation(
        api: Api, engine: Engine, ledger: SandboxControl, worker: object) -> None:
    user, wallet = await active_wallet(api, engine)
    with processes.process("-m", "orchestrator", "monitor") as first:
        processes.wait_for(lambda: following(engine), what="the monitor to follow")
        await asyncio.sleep(0.5)
        processes.kill(first)
    ledger.pay("issuer", ledger.create_account()["publicKey"], "1.00")  # a record the pruning removes
    # Horizon prunes its history past the stored cursor: an ascending read from it silently starts at the
    # elder ledger (no 410: stellar/go services/horizon/internal/actions/helpers.go, validateAndAdjustCursor)
    ledger.add_fault(service="horizon", action="before_history", times=0)
    paid = [ledger.pay("issuer", wallet["public_key"], "3.00")["hash"] for _ in range(3)]
    try:
        with processes.process("-m", "orchestrator", "monitor"):
            counted = await wait_credits(engine, [user["id"]], 3)
    finally:
        ledger.clear_faults()
    assert sorted(tx for _, tx in counted) == sorted(paid)
    assert set(counted.values()) == {1}
    with engine.connect() as conn:
        sources = conn.execute(text("SELECT DISTINCT source FROM deposits WHERE user_id = :u"),
                               {"u": user["id"]}).scalars().all()
    assert sources == ["stellar_deposit_reconciled"]
