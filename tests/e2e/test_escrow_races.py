"""Concurrent release, refund, dispute and cancel requests racing on the same order: exactly one wins."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import Engine

from orchestrator.operations import check
from tests.api import Api
from tests.e2e.test_escrow_flow import in_progress_order
from tests.fixtures.sandbox import SandboxControl

SPEC_CODES = {"INVALID_STATE_TRANSITION", "DISPUTE_ALREADY_OPEN", "ESCROW_NOT_READY", "BALANCE_CONCURRENCY_CONFLICT"}



async def test_fifty_racing_resolutions_on_one_order_let_exactly_one_through(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, *_ = await in_progress_order(api, engine, ledger, "20.00")
    path = f"/orders/{order['id']}"
    calls = ([("release", None)] * 15 + [("refund", {"reason": "race"})] * 15
             + [("dispute", {"openedBy": "BUYER", "reason": "OTHER"})] * 10 + [("cancel", None)] * 10)
    replies = await asyncio.gather(*(
        api.post(f"{path}/{'cancel' if kind == 'cancel' else 'resolution/' + kind}", body,
                 headers={"Prefer": "wait=30"}) for kind, body in calls))
    winners = [kind for (kind, _), reply in zip(calls, replies, strict=True) if reply.status in (200, 201, 202)]
    assert len(winners) == 1, Counter(r.status for r in replies)
    assert {r.error["code"] for r in replies if r.status >= 400} <= SPEC_CODES
    assert all(r.status == 409 for r in replies if r.status >= 400)
    # the winner's ledger work completes and the book stays consistent
    for _ in range(100):
        current = (await api.get(path)).data
        if current["status"] in ("CLOSED", "DISPUTED"):
            break
        await asyncio.sleep(0.2)
    expected = {"release": "CLOSED", "refund": "CLOSED", "dispute": "DISPUTED"}[winners[0]]
    assert current["status"] == expected
    report = check.verify(engine)
    assert report.ok, report.problems
