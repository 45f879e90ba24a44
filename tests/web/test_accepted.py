"""A 202 (``Prefer: respond-async``) carries the resource as it stands, then the command moves it
(spec api.md §1.12, DESIGN "The write path" step 5).

The command is held back for real: another transaction holds the row it must lock (``SELECT … FOR
UPDATE``), so the actor waits on the database while the request answers, on any machine speed; the
test then lets it go and watches the resource reach its new state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.api import Api, Reply, unique
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_disputes import open_dispute
from tests.e2e.test_escrow_flow import in_progress_order
from tests.fixtures.sandbox import SandboxControl

ASYNC = {"Prefer": "respond-async"}


@contextlib.contextmanager
def held(engine: Engine, table: str, row_id: str) -> Iterator[None]:
    """The row locked by another transaction until the block ends: a command that locks it waits."""
    with engine.begin() as conn:
        assert conn.execute(text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id}).first()
        yield


def accepted(reply: Reply, preference: str = "respond-async") -> Any:
    """The data of a 202 whose command has not run."""
    assert reply.status == 202, reply.body
    assert reply.headers["Preference-Applied"] == preference
    assert reply.body["meta"]["pending"] is True
    assert reply.body["meta"]["commandId"].startswith("cmd_")
    return reply.data


async def until(probe: Callable[[], Awaitable[Any]], what: str, seconds: float = 30) -> Any:
    for _ in range(int(seconds * 10)):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def order_in(api: Api, order_id: str, status: str) -> dict[str, Any]:
    async def probe() -> Any:
        found = (await api.get(f"/orders/{order_id}")).data
        return found if found["status"] == status else None

    return dict(await until(probe, f"order {order_id} to reach {status}"))


async def new_order(api: Api, buyer: dict[str, Any], seller: dict[str, Any], amount: str = "10.00") -> dict[str, Any]:
    reply = await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": amount,
                                       "title": "Logo"})
    assert reply.status == 201, reply.body
    return dict(reply.data)


@pytest.mark.parametrize("preference", ["respond-async", "wait=1"])
async def test_a_reserve_answers_the_order_as_it_stands_then_reserves_it(api: Api, engine: Engine,
                                                                        preference: str) -> None:
    """Under ``respond-async`` at once; under ``wait=1`` when the wait runs out."""
    buyer, seller = await api.funded_user("25.00"), await api.user()
    order = await new_order(api, buyer, seller)
    with held(engine, "orders", order["id"]):
        reply = await api.post(f"/orders/{order['id']}/reserve", headers={"Prefer": preference})
        data = accepted(reply, preference)
    assert (data["id"], data["status"], data["escrow"], data["milestones"]) == (order["id"], "ORDER_CREATED",
                                                                                 None, [])
    await order_in(api, order["id"], "FUNDS_RESERVED")
    assert (await api.balance(buyer["id"]))["reserved"] == "10.00"


async def test_a_cancel_answers_the_order_as_it_stands_then_closes_it(api: Api, engine: Engine) -> None:
    order = await new_order(api, await api.user(), await api.user())
    with held(engine, "orders", order["id"]):
        data = accepted(await api.post(f"/orders/{order['id']}/cancel", {"reason": "changed mind"}, headers=ASYNC))
    assert (data["id"], data["status"], data["finalStatus"]) == (order["id"], "ORDER_CREATED", None)
    closed = await order_in(api, order["id"], "CLOSED")
    assert closed["finalStatus"] is not None


async def test_a_milestone_completion_answers_the_milestone_as_it_stands(api: Api, engine: Engine) -> None:
    """Found by its order and reference (the request names no milestone id). The order is not in
    progress, so the command then fails: that is reported by events, the 202 stands."""
    buyer, seller = await api.user(), await api.user()
    reply = await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                       "title": "Logo", "milestones": [
                                           {"milestoneRef": "m1", "title": "Draft", "amount": "10.00"}]})
    assert reply.status == 201, reply.body
    order = reply.data
    with held(engine, "orders", order["id"]):
        data = accepted(await api.post(f"/orders/{order['id']}/milestones/m1/complete", headers=ASYNC))
    assert data == order["milestones"][0]


async def test_a_create_answers_null_until_its_resource_exists(api: Api, engine: Engine) -> None:
    """Nothing to show before the command made it: a create's 202 has no resource to read."""
    data = accepted(await api.post("/users", {"externalUserId": unique("ext")}, headers=ASYNC))
    assert data is None


async def test_an_api_key_created_async_still_shows_its_plaintext_once(api: Api) -> None:
    """The plaintext is known only to this request: it is in the 202's data rather than lost, alone while
    the key's row does not exist yet, or beside the key as it stands when the command already ran (a
    fast worker can finish between the publish and the 202's read). A command that finished before the
    answer was composed is answered 201 with the key (respond-async is a preference, RFC 7240 §4.1;
    ``enqueue.respond``), the plaintext beside it all the same: one full run in two hit that."""
    reply = await api.post("/auth/api-keys", {"name": "async-key", "scopes": ["read"]}, headers=ASYNC)
    data = reply.data if reply.status == 201 else accepted(reply)
    key = data["key"]
    if set(data) != {"key"}:
        assert (data["name"], data["scopes"], data["status"]) == ("async-key", ["read"], "ACTIVE"), data
        assert key.endswith(data["maskedKey"][-4:]), data

    async def usable() -> bool:
        return (await api.as_(key).get("/users")).status == 200

    await until(usable, "the new key to work")


async def test_escrow_creation_answers_the_order_as_it_stands_then_deploys(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    (buyer, _), (seller, _) = await active_wallet(api, engine), await active_wallet(api, engine)
    assert (await api.post(f"/users/{buyer['id']}/balance/credit", {"amount": "10.00"})).status == 200
    order = await new_order(api, buyer, seller)
    assert (await api.post(f"/orders/{order['id']}/reserve")).status == 200
    with held(engine, "orders", order["id"]):
        data = accepted(await api.post(f"/orders/{order['id']}/escrow", headers=ASYNC))
    assert (data["id"], data["status"], data["escrow"]) == (order["id"], "FUNDS_RESERVED", None)

    async def deployed() -> Any:
        found = (await api.get(f"/orders/{order['id']}")).data
        return found if found["escrow"] and found["escrow"]["status"] == "CREATED" else None

    escrowed = await until(deployed, "the escrow to be deployed")
    assert escrowed["status"] == "ESCROW_CREATING"


async def test_a_dispute_resolution_answers_the_dispute_as_it_stands_then_resolves_it(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    order, *_ = await in_progress_order(api, engine, ledger, "20.00")
    dispute = await open_dispute(api, order["id"])
    with held(engine, "disputes", dispute["id"]):
        data = accepted(await api.post(f"/disputes/{dispute['id']}/resolve", {"decision": "FULL_REFUND"},
                                       headers=ASYNC))
    assert (data["id"], data["status"], data["resolutionDecision"]) == (dispute["id"], "OPEN", None)
    assert data["order"]["status"] == "DISPUTED"

    async def resolved() -> Any:
        found = (await api.get(f"/disputes/{dispute['id']}")).data
        return found if found["status"] == "RESOLVED" else None

    done = await until(resolved, "the dispute to be resolved", seconds=60)
    assert (done["resolutionDecision"], done["order"]["status"]) == ("FULL_REFUND", "CLOSED")
