"""The async client is the implementation the sync one runs: the same calls as coroutines and async iterators."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orchestrator.client import AsyncClient, NotFoundError
from tests.api import unique


async def test_async_calls_pages_errors_and_concurrent_idempotent_twins(server_url: str, master_key: str) -> None:
    async with AsyncClient(f"{server_url}/api/v1", master_key, backoff=0.05) as client:
        email = f"{unique('async')}@example.com"
        made = [await client.users.create(external_user_id=unique("async"), email=email) for _ in range(3)]
        listed = [u["id"] async for u in client.users.iterate(email=email, limit=1)]
        assert sorted(listed) == sorted(u["id"] for u in made)
        with pytest.raises(NotFoundError) as missing:
            await client.orders.get("ord_missing")
        assert missing.value.code == "ORDER_NOT_FOUND"

        # two concurrent calls with one key: one runs, the other waits out IN_PROGRESS or replays
        key = str(uuid.uuid4())
        user = made[0]["id"]
        first, second = await asyncio.gather(client.balance.credit(user, amount="3.00", idempotency_key=key),
                                             client.balance.credit(user, amount="3.00", idempotency_key=key))
        assert sorted([first.replayed, second.replayed]) == [False, True]
        assert (await client.balance.get(user))["available"] == "3.00"
