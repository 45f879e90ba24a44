"""Helpers shared by the AirTM-mode tests (the second instance of tests/fixtures/airtm.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine, text

from tests.api import Api
from tests.fixtures.airtm import AirtmControl


async def until(probe: Callable[[], Awaitable[Any]], what: str, seconds: float = 20) -> Any:
    """Poll ``probe`` until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def linked_user(api: Api, airtm: AirtmControl, **seed: Any) -> tuple[dict[str, Any], str]:
    """A user of the AirTM instance linked to a new seeded AirTM account."""
    email = airtm.user(**seed)
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/airtm/link", {"email": email})
    assert reply.status == 200, reply.body
    return user, email


async def status_of(api: Api, path: str, expected: str, seconds: float = 20) -> dict[str, Any]:
    """The resource at ``path`` once its status is ``expected``."""
    async def probe() -> Any:
        reply = await api.get(path)
        return reply.data if reply.status == 200 and reply.data["status"] == expected else None

    return dict(await until(probe, f"{path} to reach {expected}", seconds))


def events_of(engine: Engine, aggregate_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT event_type FROM outbox WHERE aggregate_id = :a ORDER BY id"),
                                 {"a": aggregate_id}).scalars())


def credits_for(engine: Engine, source_id: str) -> int:
    """How many times a balance was credited for this top-up or withdrawal."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM outbox WHERE event_type = 'balance.credited' "
                                     "AND payload->>'sourceId' = :s"), {"s": source_id}).scalar() or 0)


def journal_count(engine: Engine, kind: str, reference: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM journal_transactions WHERE kind = :k "
                                     "AND reference = :r"), {"k": kind, "r": reference}).scalar() or 0)


async def funded_user(api: Api, airtm: AirtmControl, amount: str) -> tuple[dict[str, Any], str]:
    """A linked user whose ``available`` comes from a real top-up paid at the sandbox's AirTM."""
    user, email = await linked_user(api, airtm)
    reply = await api.post("/topups", {"userId": user["id"], "amount": amount})
    assert reply.status == 201, reply.body
    airtm.payin(reply.data["airtmPayinId"], "confirm", email=email)
    await status_of(api, f"/topups/{reply.data['id']}", "TOPUP_SUCCEEDED")
    return user, email


async def topup_paid(api: Api, airtm: AirtmControl, user_id: str, email: str, amount: str) -> dict[str, Any]:
    """A top-up created and confirmed by the buyer; returns it as created (not waiting for our side)."""
    reply = await api.post("/topups", {"userId": user_id, "amount": amount})
    assert reply.status == 201, reply.body
    airtm.payin(reply.data["airtmPayinId"], "confirm", email=email)
    return dict(reply.data)
