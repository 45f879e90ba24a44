"""Credits recorded deposits; the message carries only the operation id."""

from __future__ import annotations

import dramatiq

from actors.broker import COMMANDS, engine, settings
from actors.dispatch import dispatch
from orchestrator import deposits
from orchestrator.unit_of_work import Context, UnitOfWork


@dramatiq.actor(queue_name=COMMANDS, max_retries=20, min_backoff=100, max_backoff=30_000)
def credit_deposit(operation_id: str) -> None:
    """Credit the deposit once; a redelivery finds it credited and does nothing."""
    context = Context(actor_type="SYSTEM", actor_id="monitor", correlation_id=operation_id)
    with UnitOfWork(engine(), context, settings=settings) as uow:
        deposits.credit(uow, operation_id)
        uow.commit()
    dispatch(uow.messages)
