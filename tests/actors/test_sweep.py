"""A command whose message was lost (web died after recording it) is published again by the scheduler."""

from __future__ import annotations

import asyncio
import threading
import time

import dramatiq
from sqlalchemy import Engine, text

from actors import scheduler
from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import commands as commands_db
from orchestrator.db import leader
from tests.api import Api


async def test_the_scheduler_republishes_a_command_whose_message_was_lost(
        api: Api, engine: Engine, worker: dramatiq.Worker) -> None:
    user = await api.user()
    # Given a command recorded exactly as the web tier records it, but never published
    command_id = ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(commands_db.insert(
            id=command_id, kind=Kind.ADJUST_BALANCE, actor_type="MASTER", actor_id="master",
            request_id="lost-message", idempotency_key=None,
            payload={"operation": "credit", "userId": user["id"], "amount": "7.00"}))
    # When the scheduler runs (COMMAND_SWEEP_SECONDS is 2 in tests)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop.is_set,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        status = "PENDING"
        while status == "PENDING" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            with engine.connect() as conn:
                status = conn.execute(text("SELECT status FROM commands WHERE id = :c"), {"c": command_id}).scalar()
    finally:
        stop.set()
        thread.join(timeout=10)
    # Then the command ran, once
    assert status == "DONE"
    assert (await api.balance(user["id"]))["available"] == "7.00"
    # and the stopped scheduler gave up the lead: its pooled connection does not keep the session lock
    assert not thread.is_alive()
    successor = leader.try_lead(engine, leader.SCHEDULER_LOCK)
    assert successor is not None, "a stopped scheduler still holds the leader lock"
    leader.step_down(successor)
