"""api.md §1.11's per-user limits: 10 top-ups and 5 withdrawals a minute (fixed windows in Redis)."""

from __future__ import annotations

import asyncio
import time

from tests.airtm.helpers import linked_user
from tests.api import Api
from tests.fixtures.airtm import AirtmControl


async def fresh_window(needed_seconds: float = 20) -> None:
    """Start a burst early enough in a minute that it ends in the same fixed window (web/ratelimit.py)."""
    if time.time() % 60 > 60 - needed_seconds:
        await asyncio.sleep(60 - time.time() % 60 + 0.2)


async def first_refusal(api: Api, path: str, body: dict[str, str], limit: int) -> tuple[int, dict[str, object]]:
    """How many requests passed before the first 429."""
    await fresh_window()
    for sent in range(2 * limit + 1):
        reply = await api.post(path, body)
        if reply.status == 429:
            return sent, reply.error
        assert reply.status == 201, reply.body
    raise AssertionError(f"no 429 after {2 * limit + 1} requests")


async def test_an_eleventh_topup_within_a_minute_is_refused(airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    passed, error = await first_refusal(airtm_api, "/topups", {"userId": user["id"], "amount": "1.00"}, 10)
    assert passed == 10
    assert (error["code"], error["details"]["limit"], error["details"]["windowSeconds"]) == ("RATE_LIMITED", 10, 60)
    other, _ = await linked_user(airtm_api, airtm)  # the limit is per user
    assert (await airtm_api.post("/topups", {"userId": other["id"], "amount": "1.00"})).status == 201


async def test_a_sixth_withdrawal_within_a_minute_is_refused(airtm_api: Api, airtm: AirtmControl) -> None:
    user, _ = await linked_user(airtm_api, airtm)
    await airtm_api.post(f"/users/{user['id']}/balance/credit", {"amount": "120.00"})
    body = {"userId": user["id"], "amount": "10.00", "destinationType": "bank", "destinationRef": "bank_ref"}
    passed, error = await first_refusal(airtm_api, "/withdrawals", body, 5)
    assert passed == 5
    assert (error["code"], error["details"]["limit"]) == ("RATE_LIMITED", 5)
    assert (await airtm_api.balance(user["id"]))["available"] == f"{120 - 10 * passed}.00"
