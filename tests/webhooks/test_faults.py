"""At least once, whatever breaks (issue 17, "Safety and bad input"): the webhooks worker SIGKILLed in the
middle of deliveries, RabbitMQ restarted hard, the receiver gone for a while. Afterwards the receiver's
deduplicated set equals the outbox's set of matching events.

The scheduler and the webhooks worker run as the Procfile runs them, on a private RabbitMQ node (the
chaos rig's), so restarting the broker touches nobody else's queues.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from orchestrator import ids
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork
from scripts.chaos.rig import RabbitMQ
from tests.api import Api
from tests.fixtures import processes
from tests.webhooks.conftest import Receiver, eventually

pytestmark = pytest.mark.slow
#: Every wait of this test is bounded; the whole run takes about a minute on 2 cores.
SECONDS = 120


@pytest.fixture
def rabbitmq(tmp_path: Path, settings: Settings) -> Iterator[RabbitMQ]:
    node = RabbitMQ.create(tmp_path / "rabbitmq", f"wh{settings.queue_prefix}")
    node.start()
    yield node
    node.stop()


def emit(engine: Engine, tag: str, count: int) -> None:
    """``count`` user.created events for users tagged ``tag``, as the product writes them (one transaction)."""
    with UnitOfWork(engine, Context(actor_type="SYSTEM", correlation_id=f"faults-{tag}")) as uow:
        for n in range(count):
            user_id = f"usr_{tag}{n:04d}"
            uow.emit("user.created", user_id, {"userId": user_id, "externalUserId": f"{tag}-{n}"}, user_id=user_id)
        uow.commit()


def settled(engine: Engine, endpoint_id: str, at_least: int) -> bool:
    """The endpoint has its deliveries (at least ``at_least``) and every one has succeeded."""
    with engine.connect() as conn:
        total, open_ = conn.execute(text(
            "SELECT count(*), count(*) FILTER (WHERE status <> 'SUCCEEDED') FROM webhook_deliveries "
            "WHERE endpoint_id = :e"), {"e": endpoint_id}).one()
    return total >= at_least and open_ == 0


async def test_every_event_arrives_through_a_killed_worker_a_broker_restart_and_a_receiver_drop(
        api: Api, engine: Engine, settings: Settings, rabbitmq: RabbitMQ) -> None:
    tag = "wf" + ids.new_id("command")[4:10]
    receiver = Receiver(delay=0.05)
    await receiver.start()
    made = await api.post("/webhooks/endpoints", {"url": receiver.url, "eventTypes": ["user.created"]})
    assert made.status == 201, made.body
    endpoint_id = made.data["id"]
    env = {"RABBITMQ_URL": rabbitmq.url, "QUEUE_PREFIX": f"{settings.queue_prefix}wf_",
           "WEBHOOK_RETRY_SCHEDULE": "1"}
    worker_args = ("-m", "dramatiq", "actors", "--processes", "1", "--threads", "4",
                   "--queues", f"{settings.queue_prefix}wf_webhooks")
    with processes.process("-m", "orchestrator", "scheduler", **env):
        worker = processes.process(*worker_args, **env)
        child = worker.__enter__()
        try:
            # deliveries under way when the worker is SIGKILLed
            receiver.delay = 0.3
            emit(engine, tag + "a", 60)
            await eventually(lambda: len(receiver.requests) >= 5, seconds=60, what="deliveries to start")
            processes.kill(child)
            worker.__exit__(None, None, None)
            worker = processes.process(*worker_args, **env)
            child = worker.__enter__()
            receiver.delay = 0.02
            # RabbitMQ restarted hard while events keep coming
            emit(engine, tag + "b", 40)
            await asyncio.to_thread(rabbitmq.restart, True)
            emit(engine, tag + "c", 40)
            # the receiver gone for a while (connection refused: retries every second)
            await eventually(lambda: len(receiver.requests) >= 70, seconds=60, what="deliveries to go on")
            await receiver.stop()
            emit(engine, tag + "d", 40)
            await asyncio.sleep(3)
            await receiver.start()  # the same port again
            await eventually(lambda: settled(engine, endpoint_id, 180), seconds=SECONDS,
                             what="every delivery to succeed")
        finally:
            worker.__exit__(None, None, None)
            await receiver.stop()
    with engine.connect() as conn:
        expected = set(conn.execute(text(
            "SELECT event_id FROM outbox WHERE event_type = 'user.created' AND aggregate_id LIKE :t AND "
            "position IS NOT NULL"), {"t": f"usr_{tag}%"}).scalars())
    ours = {r.headers["webhook-id"] for r in receiver.requests
            if json.loads(r.body)["aggregateId"].startswith(f"usr_{tag}")}
    assert len(expected) == 180
    assert ours == expected  # every event at least once, nothing invented
    assert len(receiver.requests) >= len(ours)  # duplicates are allowed; the receiver deduplicates
