"""The audit hash chain: commit-ordered positions, append-only rows, and ``audit verify`` naming a tampered entry.

Tampering is done as a superuser with triggers off (``session_replication_role = replica``), the
only way round the append-only trigger, inside a transaction that the in-process checks roll back;
the command-line checks use a database of this module's own, tampered for good.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from orchestrator import audit
from orchestrator.db import create_sync_engine, session
from orchestrator.outbox import relay
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork
from tests.fixtures.database import own_database
from tests.fixtures.processes import ROOT


def write_entries(engine: Engine, count: int, *, action: str = "test.entry") -> list[str]:
    """``count`` entries, each committed in its own unit of work, then chained by the relay."""
    written = []
    for n in range(count):
        with UnitOfWork(engine, Context(actor_type="SUPPORT", actor_id="tests")) as uow:
            written.append(uow.audit(action, "Test", f"res_{n}", after={"n": n, "note": "hello"}))
            uow.commit()
    relay.relay(engine)
    return written


def positions(conn: Connection, entry_ids: list[str]) -> dict[str, int]:
    rows = conn.execute(text("SELECT id, position FROM audit_log WHERE id = ANY(:ids)"), {"ids": entry_ids}).all()
    return dict(rows)  # type: ignore[arg-type]


@pytest.fixture
def tamper(engine: Engine) -> Iterator[Connection]:
    """A superuser connection with triggers off, inside a transaction that is always rolled back."""
    with engine.connect() as conn:
        conn.begin()
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        try:
            yield conn
        finally:
            conn.rollback()


def test_entries_are_chained_in_commit_order_not_insertion_order(engine: Engine) -> None:
    # Given an entry inserted first but committed last
    with UnitOfWork(engine, Context()) as late:
        late_id = late.audit("test.late", "Test", "res_late")
        early_id = write_entries(engine, 1, action="test.early")[0]
        relay.relay(engine)
        late.commit()
    # When the relay runs after the late commit
    relay.relay(engine)
    # Then the early-committed entry holds the lower position and the whole chain verifies
    with engine.connect() as conn:  # one snapshot, as `offerhub audit verify` walks it: others may relay meanwhile
        conn.exec_driver_sql(session.SNAPSHOT)
        found = positions(conn, [late_id, early_id])
        assert found[early_id] < found[late_id]
        result = audit.verify(conn)
    assert result.ok, result.problem
    assert result.unchained == 0


def test_the_product_cannot_update_or_delete_an_entry(engine: Engine) -> None:
    entry = write_entries(engine, 1)[0]
    statements = [
        ("UPDATE audit_log SET payload_after = '{}'::jsonb WHERE id = :id", {"id": entry}),
        ("UPDATE audit_log SET entry_hash = repeat('0', 64) WHERE id = :id", {"id": entry}),
        ("UPDATE audit_log SET position = NULL, prev_hash = NULL, entry_hash = NULL, chained_at = NULL "
         "WHERE id = :id", {"id": entry}),
        ("DELETE FROM audit_log WHERE id = :id", {"id": entry}),
        ("TRUNCATE audit_log", {}),
    ]
    for sql, params in statements:
        with engine.connect() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(sql), params)


def test_an_intact_chain_verifies(engine: Engine) -> None:
    write_entries(engine, 3)
    with engine.connect() as conn:  # one snapshot, as `offerhub audit verify` walks it: others may relay meanwhile
        conn.exec_driver_sql(session.SNAPSHOT)
        result = audit.verify(conn)
    assert result.ok, result.problem
    assert result.checked >= 3
    assert result.head == result.checked


def test_a_changed_entry_is_named(engine: Engine, tamper: Connection) -> None:
    entries = write_entries(engine, 3)
    tamper.execute(text("UPDATE audit_log SET payload_after = '{\"n\": 99}'::jsonb WHERE id = :id"),
                   {"id": entries[1]})
    result = audit.verify(tamper)
    assert not result.ok
    assert result.entry_id == entries[1]
    assert "was changed" in (result.problem or "")


def test_a_changed_actor_is_named(engine: Engine, tamper: Connection) -> None:
    entries = write_entries(engine, 2)
    tamper.execute(text("UPDATE audit_log SET actor_id = 'someone-else' WHERE id = :id"), {"id": entries[0]})
    result = audit.verify(tamper)
    assert result.entry_id == entries[0]


def test_a_removed_entry_is_named(engine: Engine, tamper: Connection) -> None:
    entries = write_entries(engine, 3)
    at = positions(tamper, entries)
    tamper.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": entries[1]})
    result = audit.verify(tamper)
    assert not result.ok
    assert result.position == at[entries[1]]
    assert "removed" in (result.problem or "")
    assert entries[0] in (result.problem or "")
    assert result.entry_id == entries[2]


def test_a_removed_last_entry_is_named(engine: Engine, tamper: Connection) -> None:
    entries = write_entries(engine, 2)
    at = positions(tamper, entries)
    tamper.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": entries[1]})
    result = audit.verify(tamper)
    assert not result.ok
    assert result.position == at[entries[1]]
    assert "removed" in (result.problem or "")


def test_two_swapped_entries_are_named(engine: Engine, tamper: Connection) -> None:
    entries = write_entries(engine, 3)
    at = positions(tamper, entries)
    first, second = entries[0], entries[1]
    tamper.execute(text("UPDATE audit_log SET position = -1 WHERE id = :id"), {"id": first})
    tamper.execute(text("UPDATE audit_log SET position = :p WHERE id = :id"), {"p": at[first], "id": second})
    tamper.execute(text("UPDATE audit_log SET position = :p WHERE id = :id"), {"p": at[second], "id": first})
    result = audit.verify(tamper)
    assert not result.ok
    assert result.entry_id == second
    assert "out of order" in (result.problem or "")


def test_an_entry_appended_behind_the_relays_back_is_named(engine: Engine, tamper: Connection) -> None:
    # Given a forged entry appended after the last one, with a correctly computed hash
    write_entries(engine, 2)
    last = tamper.execute(text("SELECT position, entry_hash FROM audit_log WHERE position = "
                               "(SELECT max(position) FROM audit_log)")).one()
    forged = {"id": "aud_forged", "occurred_at": None, "action": "test.forged", "resource_type": "Test",
              "resource_id": None, "user_id": None, "payload_before": None, "payload_after": None,
              "actor_type": "SYSTEM", "actor_id": None, "result": "SUCCESS", "error": None,
              "idempotency_key": None, "correlation_id": None, "request_id": None}
    row = tamper.execute(text(
        "INSERT INTO audit_log (id, action, resource_type, actor_type, result, position, prev_hash) "
        "VALUES ('aud_forged', 'test.forged', 'Test', 'SYSTEM', 'SUCCESS', :p, :prev) RETURNING occurred_at"),
        {"p": last.position + 1, "prev": last.entry_hash}).one()
    forged["occurred_at"] = row.occurred_at
    digest = audit.content_hash(forged, position=last.position + 1, prev_hash=last.entry_hash)
    tamper.execute(text("UPDATE audit_log SET entry_hash = :h WHERE id = 'aud_forged'"), {"h": digest})
    # Then the walk finds a chain longer than the relay ever made, and names the first extra entry
    result = audit.verify(tamper)
    assert not result.ok
    assert result.entry_id == "aud_forged"
    assert "inserted" in (result.problem or "")


# --- the operator command, on a database of this module's own ----------------------------------------

@dataclasses.dataclass
class Isolated:
    engine: Engine
    settings: Settings


@pytest.fixture(scope="module")
def isolated(settings: Settings) -> Iterator[Isolated]:
    with own_database(f"{settings.database_url}_audit") as url:
        engine = create_sync_engine(url, pool_size=2)
        yield Isolated(engine, dataclasses.replace(settings, database_url=url))
        engine.dispose()


def verify_command(db: Isolated) -> Any:
    import os
    env = {**os.environ, "DATABASE_URL": db.settings.database_url}
    return subprocess.run([sys.executable, "-m", "orchestrator", "audit", "verify"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_verify_command_passes_an_intact_chain_and_names_a_changed_entry(isolated: Isolated) -> None:
    # Given entries, one of them committed but not yet chained (the command chains it first)
    entries = write_entries(isolated.engine, 4)
    with UnitOfWork(isolated.engine, Context()) as uow:
        uow.audit("test.unchained", "Test", "res_x")
        uow.commit()
    ok = verify_command(isolated)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 5 audit entries chained" in ok.stdout
    # When a superuser changes one entry's result for good
    with isolated.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text("UPDATE audit_log SET result = 'FAILURE' WHERE id = :id"), {"id": entries[2]})
    # Then the command fails and names it
    failed = verify_command(isolated)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert f"Entry: {entries[2]}" in failed.stdout
    assert "was changed" in failed.stdout


def test_the_audit_command_needs_its_action() -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", "audit"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "verify" in done.stderr


def test_a_webhook_receipt_is_one_redacted_entry_by_the_webhook_actor(engine: Engine) -> None:
    body = {"eventType": "payin.succeeded", "data": {"id": "pi_1", "code": "topup_abc", "email": "pay.er@x.io",
                                                     "amount": "10.00"}}
    with UnitOfWork(engine, Context()) as uow:
        entry_id = audit.webhook_received(uow.conn, provider="airtm", delivery_id="msg_2x",
                                          event_type="payin.succeeded", resource_type="TopUp",
                                          resource_id="topup_abc", body=body)
        uow.commit()
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM audit_log WHERE id = :i"), {"i": entry_id}).mappings().one()
    assert (row["action"], row["actor_type"], row["actor_id"], row["correlation_id"]) == (
        "webhook.received", "WEBHOOK", "airtm", "msg_2x")
    assert (row["resource_type"], row["resource_id"], row["result"]) == ("TopUp", "topup_abc", "SUCCESS")
    assert row["payload_after"]["body"]["data"] == {"id": "pi_1", "code": "topup_abc", "email": "p***@x.io",
                                                    "amount": "10.00"}


def test_a_large_backlog_is_chained_over_several_passes_in_order(engine: Engine) -> None:
    from orchestrator.db.outbox import RELAY_LOCK

    with UnitOfWork(engine, Context()) as uow:
        backlog = [uow.audit("test.backlog", "Test", f"res_{n}") for n in range(7)]
        uow.commit()
    passes = []
    while True:
        with session.transaction(engine) as conn:
            session.advisory_xact_lock(conn, RELAY_LOCK)  # as the relay holds it
            stamped = audit.chain_committed(conn, batch=2, limit=3)
            conn.commit()
        if not stamped:
            break
        passes.append(stamped)
    assert sum(passes) >= 7
    assert max(passes) <= 4  # at most one batch past the limit
    with engine.connect() as conn:
        found = positions(conn, backlog)
        assert [found[e] for e in backlog] == sorted(found[e] for e in backlog)
        assert audit.verify(conn).ok
