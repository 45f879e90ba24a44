"""A command's ``command_done`` notification carries its state, so the waiting request need not read
the row again (issue 16); a state too long for a notification carries its id alone."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from sqlalchemy import Engine

from orchestrator import ids
from orchestrator.db import commands as commands_db
from orchestrator.db import libpq_url


def _recorded(engine: Engine) -> str:
    command_id = ids.new_id("command")
    with engine.begin() as conn:
        conn.execute(commands_db.insert(id=command_id, kind="credit", payload={"userId": "usr_x"},
                                        actor_type="PLATFORM", actor_id=None, request_id=None,
                                        idempotency_key=None))
    return command_id


def _notes(engine: Engine, act: Any) -> list[str]:
    """The ``command_done`` payloads delivered once ``act(conn)`` committed."""
    with psycopg.connect(libpq_url(engine.url.render_as_string(hide_password=False)), autocommit=True) as listen:
        listen.execute(f'LISTEN "{commands_db.DONE_CHANNEL}"')
        with engine.begin() as conn:
            act(conn)
        return [note.payload for note in listen.notifies(timeout=2, stop_after=1)]


def test_a_finished_command_is_announced_with_its_state(engine: Engine) -> None:
    command_id = _recorded(engine)

    def finish(conn: Any) -> None:
        commands_db.finish(conn, command_id, status="DONE", result={"status": 200, "resource": "balance",
                                                                    "id": "usr_x", "data": {"amount": "1.00"}})
        commands_db.start_flow(conn, command_id)
        commands_db.notify_done(conn, command_id)

    [payload] = _notes(engine, finish)
    assert json.loads(payload) == {
        "id": command_id, "status": "DONE", "flowStatus": "RUNNING", "error": None, "flowError": None,
        "result": {"status": 200, "resource": "balance", "id": "usr_x", "data": {"amount": "1.00"}}}

    def end_flow(conn: Any) -> None:
        commands_db.finish_flow(conn, command_id, failed={"code": "X", "message": "no"})
        commands_db.notify_done(conn, command_id)

    [payload] = _notes(engine, end_flow)
    assert json.loads(payload)["flowStatus"] == "FAILED"
    assert json.loads(payload)["flowError"] == {"code": "X", "message": "no"}


def test_a_state_too_long_for_a_notification_is_announced_by_its_id_alone(engine: Engine) -> None:
    command_id = _recorded(engine)
    error = {"code": "VALIDATION_FAILED", "message": "é" * 5_000}  # 10,000 bytes: pg_notify refuses 8,000

    def fail(conn: Any) -> None:
        commands_db.finish(conn, command_id, status="FAILED", error=error)
        commands_db.notify_done(conn, command_id)

    [payload] = _notes(engine, fail)
    assert json.loads(payload) == {"id": command_id}
    with engine.connect() as conn:
        assert conn.execute(commands_db.status_of(command_id)).one().error == error
