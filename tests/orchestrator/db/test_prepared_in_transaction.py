"""``Query.run``: a fixed statement executed straight on psycopg inside a SQLAlchemy transaction (issue 16)
behaves as ``Connection.execute`` did: same transaction, same stored JSON, same exception types."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, exc, select, text

from orchestrator import ids
from orchestrator.db import audit as audit_db
from orchestrator.db import commands as commands_db
from orchestrator.db import create_web_engine, session
from orchestrator.db import wallets as wallets_db
from orchestrator.db.tables import audit_log


def _entry(**overrides: object) -> dict[str, object]:
    return {"id": ids.new_id("audit"), "action": "test.prepared", "resource_type": "Test", "resource_id": None,
            "user_id": None, "payload_before": None, "payload_after": {"amount": "1.00", "nested": [1, None]},
            "actor_type": "SYSTEM", "actor_id": None, "result": "SUCCESS", "error": None,
            "idempotency_key": None, "correlation_id": None, "request_id": None} | overrides


def test_a_statement_run_on_psycopg_is_part_of_the_transaction(engine: Engine) -> None:
    kept, dropped = _entry(), _entry()
    with session.transaction(engine) as conn:
        audit_db.insert(conn, **dropped)
        conn.rollback()
    with session.transaction(engine) as conn:
        audit_db.insert(conn, **kept)
        conn.execute(text("SELECT 1"))  # SQLAlchemy's own statements share it
        conn.commit()
    with engine.connect() as conn:
        found = set(conn.execute(select(audit_log.c.id).where(audit_log.c.id.in_([kept["id"], dropped["id"]])))
                    .scalars())
    assert found == {kept["id"]}


def test_json_values_are_stored_as_sqlalchemy_stores_them(engine: Engine) -> None:
    """A dict as JSONB, and None as JSON ``null`` (SQLAlchemy's JSON type's default), not SQL NULL: rows
    written by either path read and hash alike."""
    entry = _entry()
    with session.transaction(engine) as conn:
        audit_db.insert(conn, **entry)
        conn.execute(audit_db.insert_statement(**_entry(id=f"{entry['id']}x")))
        conn.commit()
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, jsonb_typeof(payload_before), jsonb_typeof(error), payload_after FROM audit_log "
            "WHERE id IN (:a, :b) ORDER BY id"), {"a": entry["id"], "b": f"{entry['id']}x"}).all()
    assert [tuple(r[1:]) for r in rows] == [("null", "null", entry["payload_after"])] * 2


def test_a_refused_statement_raises_sqlalchemys_error(engine: Engine) -> None:
    entry = _entry()
    with session.transaction(engine) as conn:
        audit_db.insert(conn, **entry)
        conn.commit()
    with session.transaction(engine) as conn, pytest.raises(exc.IntegrityError) as raised:
        audit_db.insert(conn, **entry)
    assert "duplicate key" in str(raised.value.orig)
    with session.transaction(engine) as conn:  # the pool's connection is usable again
        assert commands_db.lock(conn, ids.new_id("command")) is None


async def test_a_statement_runs_through_sqlalchemy_on_an_async_drivers_sync_view(engine: Engine) -> None:
    """The web tier's ``run_sync`` hands domain code a synchronous connection over psycopg's async one:
    there ``Query.run`` has no synchronous psycopg connection and runs the statement through SQLAlchemy."""
    entry = _entry()
    web_engine = create_web_engine(engine.url.render_as_string(hide_password=False))
    try:
        async with web_engine.begin() as conn:
            await conn.run_sync(lambda sync: audit_db.insert(sync, **entry))
            found = await conn.run_sync(lambda sync: wallets_db.of_user_now(sync, ids.new_id("user")))
    finally:
        await web_engine.dispose()
    assert found is None
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT jsonb_typeof(payload_before) FROM audit_log WHERE id = :id"),
                              {"id": entry["id"]}).scalar()
    assert stored == "null"
