"""Credits recorded deposits; messages carry only operation ids."""

from __future__ import annotations

import dramatiq

from actors.broker import COMMANDS, engine, settings
from actors.dispatch import dispatch
from orchestrator.payments import deposits
from orchestrator.unit_of_work import Context, UnitOfWork

#: Deposits credited per message (and per transaction) when the monitor finds many at once.
BATCH = 50


@dramatiq.actor(queue_name=COMMANDS, max_retries=20, min_backoff=100, max_backoff=30_000)
def credit_deposits(operation_ids: list[str]) -> None:
    """Credit each deposit once; a redelivery finds them credited and does nothing."""
    context = Context(actor_type="SYSTEM", actor_id="monitor", correlation_id=operation_ids[0])
    with UnitOfWork(engine(), context, settings=settings) as uow:
        deposits.credit(uow, operation_ids)
        uow.commit()
    dispatch(uow.messages)


def send_credits(operation_ids: list[str]) -> None:
    """One message per batch of newly recorded deposits (one publish per deposit was the monitor's
    main cost)."""
    for start in range(0, len(operation_ids), BATCH):
        credit_deposits.send(operation_ids[start:start + BATCH])
