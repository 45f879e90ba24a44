"""When an Idempotency-Key may be released (api.md §1.10): never while its command can still have,
or has had, an effect, so a retry with the key finds that command instead of running a second one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from orchestrator import ids
from orchestrator.db import commands as commands_db
from orchestrator.db import idempotency as idempotency_db


@pytest.fixture(autouse=True)
def _no_command_left(engine: Engine) -> Iterator[None]:
    """The rows below are no real commands: none may outlive its test, or the scheduler of a later test
    (which republishes pending commands) would hand it to a worker, to fail on every delivery."""
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM idempotency_keys WHERE scope LIKE 'scope-%'"))
        conn.execute(text("DELETE FROM commands WHERE actor_id LIKE 'scope-%' AND kind = 'adjust_balance' "
                          "AND payload = '{}'::jsonb"))


def _key_with_command(engine: Engine, **command: str | None) -> tuple[str, str, str]:
    scope, key, command_id = f"scope-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(idempotency_db.claim(scope, key, "print"))
        conn.execute(commands_db.insert(id=command_id, kind="adjust_balance", payload={}, actor_type="USER",
                                        actor_id=scope, request_id=None, idempotency_key=key))
        conn.execute(idempotency_db.attach_command(scope, key, command_id))
        conn.execute(text("UPDATE commands SET status = :status, flow_status = :flow WHERE id = :id"),
                     {"status": command.get("status", "PENDING"), "flow": command.get("flow"), "id": command_id})
    return scope, key, command_id


def _released(engine: Engine, scope: str, key: str) -> bool:
    with engine.begin() as conn:
        conn.execute(idempotency_db.release(scope, key))
        return conn.execute(idempotency_db.get(scope, key)).first() is None


@pytest.mark.parametrize(("status", "flow", "released"), [
    ("PENDING", None, False),     # it will still run
    ("DONE", None, False),        # it ran: a second run would move the money again
    ("DONE", "RUNNING", False),   # its ledger work is under way
    ("DONE", "DONE", False),
    ("FAILED", None, True),       # nothing happened: the key may run again
    ("DONE", "FAILED", True),     # its flow failed and was rolled back
])
def test_a_key_is_released_only_when_its_command_failed(engine: Engine, status: str, flow: str | None,
                                                         released: bool) -> None:
    scope, key, _ = _key_with_command(engine, status=status, flow=flow)
    assert _released(engine, scope, key) is released


def test_a_key_without_a_command_is_released(engine: Engine) -> None:
    scope, key = f"scope-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(idempotency_db.claim(scope, key, "print"))
    assert _released(engine, scope, key)
