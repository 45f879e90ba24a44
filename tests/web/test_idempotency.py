"""Idempotency-Key (spec api.md §1.10): replays, conflicts, and one effect under concurrency."""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine, text

from tests.api import Api, idempotency_key


async def test_the_same_key_and_body_replays_the_stored_answer_without_running_twice(api: Api) -> None:
    user = await api.user()
    key = idempotency_key()
    first = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "3.00"},
                           headers={"Idempotency-Key": key})
    again = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "3.00"},
                           headers={"Idempotency-Key": key})
    assert first.status == again.status == 200
    assert again.headers["Idempotency-Replay"] == "true"
    assert again.headers["X-Idempotency-Key"] == key
    assert again.body == first.body
    assert (await api.balance(user["id"]))["available"] == "3.00"


async def test_the_same_key_with_another_body_is_refused(api: Api) -> None:
    user = await api.user()
    key = idempotency_key()
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "3.00"}, headers={"Idempotency-Key": key})
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "4.00"},
                           headers={"Idempotency-Key": key})
    assert reply.status == 409
    assert reply.error["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert reply.error["details"]["idempotencyKey"] == key


async def test_a_business_error_is_stored_and_replayed_as_the_same_error(api: Api) -> None:
    user = await api.user()
    key = idempotency_key()
    first = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "1.00"}, headers={"Idempotency-Key": key})
    await api.post(f"/users/{user['id']}/balance/credit", {"amount": "5.00"})
    again = await api.post(f"/users/{user['id']}/balance/debit", {"amount": "1.00"}, headers={"Idempotency-Key": key})
    assert first.status == again.status == 422
    assert again.error["code"] == "INSUFFICIENT_FUNDS"
    assert again.headers["Idempotency-Replay"] == "true"
    assert (await api.balance(user["id"]))["available"] == "5.00"


async def test_a_retry_after_an_accepted_answer_returns_the_final_outcome(api: Api) -> None:
    user = await api.user()
    key = idempotency_key()
    headers = {"Idempotency-Key": key, "Prefer": "respond-async"}
    first = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "9.00"}, headers=headers)
    assert first.status == 202
    assert first.body["meta"]["pending"] is True
    for _ in range(50):
        again = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "9.00"},
                               headers={"Idempotency-Key": key})
        if again.status == 200:
            break
        await asyncio.sleep(0.1)
    assert again.status == 200
    assert again.data["newBalance"]["available"] == "9.00"
    assert (await api.balance(user["id"]))["available"] == "9.00"


async def test_a_hundred_concurrent_identical_requests_make_one_effect(api: Api, engine: Engine) -> None:
    user = await api.user()
    key = idempotency_key()
    replies = await asyncio.gather(*(
        api.post(f"/users/{user['id']}/balance/credit", {"amount": "1.00"}, headers={"Idempotency-Key": key})
        for _ in range(100)))
    statuses = sorted({r.status for r in replies})
    assert set(statuses) <= {200, 409}
    assert all(r.error["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS" for r in replies if r.status == 409)
    assert any(r.status == 200 for r in replies)
    assert (await api.balance(user["id"]))["available"] == "1.00"
    with engine.connect() as conn:
        commands = conn.execute(text("SELECT count(*) FROM commands WHERE idempotency_key = :k"), {"k": key}).scalar()
    assert commands == 1
