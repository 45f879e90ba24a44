"""Deposits: every USDC payment into a wallet is credited once, and nothing else is."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from aiohttp.test_utils import TestClient
from sqlalchemy import Engine, text

from tests.api import Api
from tests.e2e.test_wallets import wallet_status
from tests.fixtures.sandbox import SandboxControl


async def active_wallet(api: Api, engine: Engine) -> tuple[dict, dict]:
    user = await api.user()
    return user, await wallet_status(engine, user["id"])


async def credited(engine: Engine, user_id: str, count: int, seconds: float = 30) -> list[dict]:
    for _ in range(int(seconds * 10)):
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT payload FROM outbox WHERE aggregate_id = :u AND event_type = 'balance.credited' "
                "ORDER BY id"), {"u": user_id}).scalars().all()
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"{user_id}: {len(rows)} credits, wanted {count}")


async def test_a_deposit_made_on_the_ledger_reaches_balance_credited_on_the_stream(
        api: Api, client: TestClient, master_key: str, engine: Engine, ledger: SandboxControl,
        monitor: None) -> None:
    user, wallet = await active_wallet(api, engine)
    headers = {"Authorization": f"Bearer {master_key}"}
    async with client.get("/api/v1/events?types=balance.credited", headers=headers) as stream:
        await asyncio.sleep(0.2)
        paid = ledger.pay("issuer", wallet["public_key"], "12.3456789")
        event = None
        async for raw in stream.content:
            line = raw.decode()
            if line.startswith("data: ") and user["id"] in line:
                event = json.loads(line[6:])
                break
    assert event["payload"]["source"] == "stellar_deposit"
    assert event["payload"]["transactionHash"] == paid["hash"]
    assert event["payload"]["amount"] == "12.3456789"
    assert (await api.balance(user["id"]))["available"] == "12.3456789"


async def test_payments_that_are_not_usdc_deposits_are_not_credited(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    user, wallet = await active_wallet(api, engine)
    outsider = ledger.create_account(usdc_trustline=True, usdc="50")
    ledger.pay(outsider["secret"], wallet["public_key"], "3.0000000", asset="XLM")  # XLM is not money here
    ledger.pay(outsider["secret"], wallet["public_key"], "5.00")  # a real USDC deposit, as a marker
    await credited(engine, user["id"], 1)
    await asyncio.sleep(0.5)
    rows = await credited(engine, user["id"], 1)
    assert [r["amount"] for r in rows] == ["5.00"]
    assert (await api.balance(user["id"]))["available"] == "5.00"


async def test_many_deposits_to_many_wallets_are_each_credited_once(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    people = [await active_wallet(api, engine) for _ in range(3)]
    for i in range(10):
        for _, wallet in people:
            ledger.pay("issuer", wallet["public_key"], f"{i + 1}.00")
    for user, _ in people:
        rows = await credited(engine, user["id"], 10)
        assert sorted(Decimal(r["amount"]) for r in rows) == [Decimal(i + 1) for i in range(10)]
        assert (await api.balance(user["id"]))["available"] == "55.00"


async def test_a_dropped_stream_loses_nothing(api: Api, engine: Engine, ledger: SandboxControl,
                                              monitor: None) -> None:
    user, wallet = await active_wallet(api, engine)
    ledger.add_fault(service="horizon", action="stream_disconnect", times=3)
    for _ in range(5):
        ledger.pay("issuer", wallet["public_key"], "1.00")
        await asyncio.sleep(0.05)
    await credited(engine, user["id"], 5)
    await asyncio.sleep(0.5)
    assert len(await credited(engine, user["id"], 5)) == 5
    assert (await api.balance(user["id"]))["available"] == "5.00"
