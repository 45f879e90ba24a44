"""A worker killed with SIGKILL in the middle of a command: after a restart it completes exactly once."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import dramatiq
import pytest
from sqlalchemy import Engine, text

from orchestrator import ids
from orchestrator.commands import Kind
from orchestrator.db import commands as commands_db
from orchestrator.settings import Settings
from tests import builders
from tests.fixtures import processes
from tests.fixtures.broker import delete_queues

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def worker_process(prefix: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """``dramatiq actors`` as the Procfile runs it, on queues of its own (the in-process worker ignores them)."""
    return processes.process("-m", "dramatiq", "actors", "--processes", "1", "--threads", "2",
                             "--queues", f"{prefix}commands", f"{prefix}events", QUEUE_PREFIX=prefix)


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


@pytest.fixture
def crash_prefix(settings: Settings) -> Iterator[str]:
    prefix = f"{settings.queue_prefix}crash_"
    yield prefix
    delete_queues(settings, prefix)


def test_a_command_interrupted_by_sigkill_completes_exactly_once_after_restart(
        engine: Engine, broker: dramatiq.Broker, crash_prefix: str) -> None:
    prefix = crash_prefix
    user_id = builders.user(engine)
    command_id = ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(commands_db.insert(
            id=command_id, kind=Kind.ADJUST_BALANCE, actor_type="MASTER", actor_id="master",
            request_id="crash-test", idempotency_key=None,
            payload={"operation": "credit", "userId": user_id, "amount": "12.34"}))
    message = dramatiq.Message(queue_name=f"{prefix}commands", actor_name="execute_command",
                               args=(command_id,), kwargs={}, options={})
    # Given the user's balance row held by another transaction, so the worker blocks mid-command
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(text("SELECT 1 FROM balances WHERE user_id = :u FOR UPDATE"), {"u": user_id})
    try:
        with worker_process(prefix) as first:
            broker.enqueue(message)
            blocked = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%balances%'"
            processes.wait_for(lambda: scalar(engine, blocked) == 1, what="the worker to block on the balance row")
            # When the worker is killed with SIGKILL while it holds the command row and waits on the balance
            processes.kill(first)
    finally:
        blocker.rollback()
        blocker.close()
    # Then nothing was applied
    assert scalar(engine, "SELECT status FROM commands WHERE id = :c", c=command_id) == "PENDING"
    assert scalar(engine, "SELECT available FROM balances WHERE user_id = :u", u=user_id) == 0
    # And after a restart RabbitMQ redelivers the unacknowledged message and it completes once
    with worker_process(prefix):
        processes.wait_for(lambda: scalar(engine, "SELECT status FROM commands WHERE id = :c", c=command_id) == "DONE")
    assert str(scalar(engine, "SELECT available FROM balances WHERE user_id = :u", u=user_id)) == "12.3400000"
    assert scalar(engine, "SELECT count(*) FROM journal_transactions WHERE command_id = :c", c=command_id) == 1
    assert scalar(engine, "SELECT count(*) FROM outbox WHERE aggregate_id = :u AND event_type = 'balance.credited'",
                  u=user_id) == 1
    # And the redelivery counted its attempt on its own (the first delivery counts inside the command's
    # transaction, which the kill rolled back): a command that always kills its worker still ends
    assert scalar(engine, "SELECT attempts FROM commands WHERE id = :c", c=command_id) == 1
