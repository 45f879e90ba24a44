"""The delivery rows' bookkeeping without a webhooks worker: the relay's rows, the scheduler's sweep, and
a delete racing a recorded attempt.

Deleting an endpoint while a worker records a delivery to it: both finish, neither deadlocks. The delete
locks the endpoint and then (cascading) its deliveries; recording an attempt used to take the delivery
first and the endpoint last, so the two could wait on each other until PostgreSQL aborted one. No
webhooks worker runs in this module: the tests drive ``webhook_delivery.drain`` and the sweep themselves.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import Engine, event, text

from orchestrator.outbox import webhook_delivery
from orchestrator.settings import Settings
from tests.api import Api
from tests.webhooks.conftest import Receiver


async def test_a_delete_during_a_delivery_neither_deadlocks_nor_fails(
        api: Api, engine: Engine, settings: Settings, receiver: Receiver) -> None:
    receiver.status = 500  # a failure updates the endpoint's failing streak as well as the delivery
    made = (await api.post("/webhooks/endpoints", {"url": receiver.url})).data
    assert (await api.post(f"/webhooks/endpoints/{made['id']}/test")).status == 202
    deleter = engine.connect()
    deleter.begin()
    # the operator's delete has begun: it holds the endpoint row
    deleter.execute(text("SELECT id FROM webhook_endpoints WHERE id = :e FOR UPDATE"), {"e": made["id"]})
    try:
        delivery = asyncio.ensure_future(asyncio.to_thread(webhook_delivery.drain, engine, settings, made["id"]))
        deadline = time.monotonic() + 20
        while not receiver.requests or not waiting(engine):  # the receiver answered; the worker waits to record
            assert time.monotonic() < deadline, "the worker never reached the recording"
            assert not delivery.done(), delivery
            await asyncio.sleep(0.05)
        deleter.execute(text("DELETE FROM webhook_endpoints WHERE id = :e"), {"e": made["id"]})  # cascades
        deleter.commit()
    finally:
        deleter.close()
    drained = await asyncio.wait_for(delivery, 20)  # no deadlock, no foreign-key error
    assert drained.messages == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM webhook_attempts")).scalar() == 0


def waiting(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )).scalar())


async def test_the_sweep_finds_deliveries_whose_message_was_lost(api: Api, engine: Engine) -> None:
    from orchestrator.operations import sweeps
    from orchestrator.outbox import relay
    from orchestrator.unit_of_work import Context, UnitOfWork

    on = (await api.post("/webhooks/endpoints", {"url": "http://127.0.0.1:9/x", "eventTypes": ["user.*"]})).data
    off = (await api.post("/webhooks/endpoints", {"url": "http://127.0.0.1:9/y", "enabled": False})).data
    later = (await api.post("/webhooks/endpoints", {"url": "http://127.0.0.1:9/z", "eventTypes": ["order.*"]})).data
    with UnitOfWork(engine, Context(actor_type="SYSTEM")) as uow:
        uow.emit("user.created", "usr_sweep0001", {"userId": "usr_sweep0001"})
        uow.commit()
    relay.relay(engine)  # numbered, deliveries created, and no message published: as if it were lost
    with engine.connect() as conn:
        per_endpoint = dict(conn.execute(text(
            "SELECT endpoint_id, count(*) FROM webhook_deliveries d JOIN outbox o USING (event_id) "
            "WHERE o.aggregate_id = 'usr_sweep0001' GROUP BY endpoint_id")).all())
    assert per_endpoint == {on["id"]: 1}  # the disabled endpoint and the order.* one get none
    assert sweeps.due_webhooks(engine) == [on["id"]]
    with engine.begin() as conn:  # a retry that is not due yet is left to its time
        conn.execute(text("UPDATE webhook_deliveries SET next_attempt_at = now() + interval '1 hour' "
                          "WHERE endpoint_id = :e"), {"e": on["id"]})
    assert sweeps.due_webhooks(engine) == []
    assert off["enabled"] is False
    assert later["id"] not in sweeps.due_webhooks(engine)


class RoundTrips:
    """Counts what a block sends PostgreSQL through one engine: each statement, and a BEGIN and a COMMIT or
    ROLLBACK per transaction (an autocommit connection sends neither)."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.statements, self.transactions = engine, 0, 0

    def _statement(self, *_: object) -> None:
        self.statements += 1

    def _begin(self, conn: Any) -> None:
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            self.transactions += 1

    @property
    def total(self) -> int:
        return self.statements + 2 * self.transactions

    def __enter__(self) -> RoundTrips:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "begin", self._begin)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "begin", self._begin)


async def test_a_delivery_costs_a_handful_of_round_trips_with_the_database(
        api: Api, engine: Engine, settings: Settings, receiver: Receiver) -> None:
    """The drain's cost is its round trips with PostgreSQL (a profile of the worker under a burst spent
    70% of its time waiting on them): one delivery to a healthy endpoint took 32 (14 statements in nine
    transactions); on one autocommit connection, with the batch read with its bodies and the attempt
    recorded in one statement each, it takes six (lock, batch, record, empty batch, unlock, next due)."""
    from orchestrator.outbox import relay
    from orchestrator.unit_of_work import Context, UnitOfWork

    made = (await api.post("/webhooks/endpoints", {"url": receiver.url, "eventTypes": ["user.*"]})).data
    with UnitOfWork(engine, Context(actor_type="SYSTEM")) as uow:
        uow.emit("user.created", "usr_cost00001", {"userId": "usr_cost00001"})
        uow.commit()
    relay.relay(engine)  # the delivery exists; no message published, the test drains by hand
    with RoundTrips(engine) as counted:
        drained = await asyncio.to_thread(webhook_delivery.drain, engine, settings, made["id"])
    assert drained.drained
    assert len(receiver.requests) == 1
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT d.status, d.attempts, count(a.id) FROM webhook_deliveries d JOIN webhook_attempts a "
            "ON a.delivery_id = d.id WHERE d.endpoint_id = :e GROUP BY d.id"), {"e": made["id"]}).all() == [
            ("SUCCEEDED", 1, 1)]
    assert counted.total <= 8, f"{counted.statements} statements in {counted.transactions} transactions"
