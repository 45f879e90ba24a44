"""The write path end to end: a request becomes a command, an actor runs it, the answer comes back."""

from __future__ import annotations

from tests.api import Api


async def test_credit_is_applied_by_the_worker_and_answered_with_the_new_balance(api: Api) -> None:
    user = await api.user()
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "25.50"})
    assert reply.status == 200
    assert reply.data["balance"]["available"] == "25.50"
    assert reply.data["previousBalance"] == {"available": "0.00", "reserved": "0.00"}
    assert (await api.balance(user["id"]))["available"] == "25.50"
