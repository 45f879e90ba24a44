"""Redelivered and republished messages change nothing: the database decides once."""

from __future__ import annotations

import dramatiq
from sqlalchemy import Engine, text

from actors.commands import execute_command
from actors.outbox import relay_outbox
from tests.api import Api
from tests.fixtures.broker import drain


def _footprint(engine: Engine, user_id: str) -> tuple:
    with engine.connect() as conn:
        return (
            conn.execute(text("SELECT count(*) FROM journal_entries WHERE user_id = :u"), {"u": user_id}).scalar(),
            conn.execute(text("SELECT count(*), max(position) FROM outbox WHERE aggregate_id = :u"),
                         {"u": user_id}).one(),
            conn.execute(text("SELECT available, reserved FROM balances WHERE user_id = :u"), {"u": user_id}).one(),
            conn.execute(text("SELECT count(*) FROM audit_log WHERE user_id = :u"), {"u": user_id}).scalar(),
        )


async def test_delivering_every_message_twice_more_changes_nothing(
        api: Api, engine: Engine, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
    # Given a user whose balance moved through three commands
    user = await api.funded_user("50.00")
    for operation, body in (("reserve", {"amount": "20.00", "orderId": "ord_x"}),
                            ("debit", {"amount": "5.00"})):
        assert (await api.post(f"/users/{user['id']}/balance/{operation}", body)).status == 200
    drain(broker, worker)
    before = _footprint(engine, user["id"])
    with engine.connect() as conn:
        commands = conn.execute(text("SELECT id FROM commands WHERE payload->>'userId' = :u "
                                     "OR payload->>'externalUserId' = :e"),
                                {"u": user["id"], "e": user["externalUserId"]}).scalars().all()
    assert len(commands) == 4
    # When every command message and the relay message are delivered twice more
    for command_id in commands * 2:
        execute_command.send(command_id)
        relay_outbox.send()
    drain(broker, worker)
    # Then the journal, the events (and their positions), the balance and the audit log are unchanged
    assert _footprint(engine, user["id"]) == before
