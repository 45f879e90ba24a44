"""Commands: the durable record of every write request, and the one function that executes them.

The web tier records a command row and publishes a message naming it; an actor calls ``execute``. The
command row is locked for the whole transaction and its status is checked first, so a redelivered
or republished message finds the command done and changes nothing: the database decides once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from orchestrator import (
    airtm_links,
    airtm_sync,
    api_keys,
    balances,
    disputes,
    escrows,
    logs,
    maintenance,
    orders,
    topups,
    users,
    withdrawals,
)
from orchestrator.db import commands as commands_db
from orchestrator.db import session
from orchestrator.errors import InternalError, OrchestratorError
from orchestrator.results import Result
from orchestrator.unit_of_work import Context, Message, UnitOfWork

DONE_CHANNEL = commands_db.DONE_CHANNEL
#: After this many deliveries a command that keeps crashing is failed rather than retried forever.
MAX_ATTEMPTS = 8


class Kind(StrEnum):
    CREATE_USER = "create_user"
    CREATE_API_KEY = "create_api_key"
    REVOKE_API_KEY = "revoke_api_key"
    ADJUST_BALANCE = "adjust_balance"
    ENABLE_MAINTENANCE = "enable_maintenance"
    DISABLE_MAINTENANCE = "disable_maintenance"
    CREATE_ORDER = "create_order"
    RESERVE_ORDER = "reserve_order"
    CANCEL_ORDER = "cancel_order"
    CREATE_ESCROW = "create_escrow"
    FUND_ESCROW = "fund_escrow"
    RELEASE_ORDER = "release_order"
    REFUND_ORDER = "refund_order"
    COMPLETE_MILESTONE = "complete_milestone"
    OPEN_DISPUTE = "open_dispute"
    ASSIGN_DISPUTE = "assign_dispute"
    RESOLVE_DISPUTE = "resolve_dispute"
    CREATE_WITHDRAWAL = "create_withdrawal"
    LINK_AIRTM = "link_airtm"
    CREATE_TOPUP = "create_topup"
    APPLY_AIRTM = "apply_airtm"


class Status(StrEnum):
    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


Handler = Callable[[UnitOfWork, dict[str, Any]], Result]

HANDLERS: dict[str, Handler] = {
    Kind.CREATE_USER: users.create,
    Kind.CREATE_API_KEY: api_keys.create,
    Kind.REVOKE_API_KEY: api_keys.revoke,
    Kind.ADJUST_BALANCE: balances.admin_operation,
    Kind.ENABLE_MAINTENANCE: maintenance.enable,
    Kind.DISABLE_MAINTENANCE: maintenance.disable,
    Kind.CREATE_ORDER: orders.create,
    Kind.RESERVE_ORDER: orders.reserve,
    Kind.CANCEL_ORDER: orders.cancel,
    Kind.CREATE_ESCROW: escrows.create,
    Kind.FUND_ESCROW: escrows.fund,
    Kind.RELEASE_ORDER: escrows.release,
    Kind.REFUND_ORDER: escrows.refund,
    Kind.COMPLETE_MILESTONE: orders.complete_milestone,
    Kind.OPEN_DISPUTE: disputes.open_dispute,
    Kind.ASSIGN_DISPUTE: disputes.assign,
    Kind.RESOLVE_DISPUTE: disputes.resolve,
    Kind.CREATE_WITHDRAWAL: withdrawals.create,
    Kind.LINK_AIRTM: airtm_links.link,
    Kind.CREATE_TOPUP: topups.create,
    Kind.APPLY_AIRTM: airtm_sync.apply_reported,
}


@dataclass(frozen=True)
class Outcome:
    """What happened to a command: ``None`` result and error when it had already finished."""

    status: str
    messages: list[Message]
    kind: str | None = None
    #: Seconds from the command's creation to its end (its age when it finished), for the metrics.
    age_seconds: float | None = None


def count_attempt(engine: Any, command_id: str) -> int:
    """Record one more delivery, committed on its own (one autocommit statement), so a crash
    mid-command still counts towards ``MAX_ATTEMPTS``."""
    return session.autocommit(engine, lambda conn: commands_db.count_attempt(conn, command_id))


def execute(engine: Any, command_id: str, settings: Any = None) -> Outcome:
    """Run the command once: lock it, apply its handler, record the result, notify, commit.

    A domain error rolls the whole transaction back and its outcome is stored by a second, short
    transaction (a failure is the rare path; a savepoint on every command cost two round trips).
    Any other exception propagates, leaving the command pending for the queue's retry (or the
    sweep) to run again.
    """
    attempts = count_attempt(engine, command_id)
    try:
        return _attempt(engine, command_id, settings, attempts)
    except OrchestratorError as error:
        return _record_failure(engine, command_id, settings, error)


def _attempt(engine: Any, command_id: str, settings: Any, attempts: int) -> Outcome:
    with UnitOfWork(engine, settings=settings) as uow:
        command = _claim(uow, command_id)
        if command is None:
            return Outcome("FINISHED", [])
        if attempts > MAX_ATTEMPTS:
            raise InternalError(f"command failed after {MAX_ATTEMPTS} attempts")
        result = HANDLERS[command.kind](uow, command.payload)
        commands_db.finish(uow.conn, command.id, status=Status.DONE, result=result.as_dict())
        uow.notify(DONE_CHANNEL, command_id)
        uow.commit()
        return Outcome(Status.DONE, list(uow.messages), command.kind, _age(command))


#: Payload fields that name what a command acts on, most specific first, with the audit resource type.
_SUBJECTS = (("withdrawalId", "Withdrawal"), ("disputeId", "Dispute"), ("orderId", "Order"),
             ("keyId", "ApiKey"), ("userId", "User"), ("buyerId", "Order"))


def _subject(kind: str, payload: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(resource type, resource id, user id) a failed command's audit entry names."""
    user_id = payload.get("userId") or payload.get("buyerId")
    if kind in (Kind.ENABLE_MAINTENANCE, Kind.DISABLE_MAINTENANCE):
        return "Maintenance", None, None
    for name, resource_type in _SUBJECTS:
        if isinstance(payload.get(name), str):
            resource_id = None if name == "buyerId" else payload[name]
            return resource_type, resource_id, user_id
    return kind.split("_", 1)[-1].title().replace("_", ""), None, user_id


def _record_failure(engine: Any, command_id: str, settings: Any, error: OrchestratorError) -> Outcome:
    """Mark the command failed, with its audit entry (result FAILURE, the request and the error)."""
    with UnitOfWork(engine, settings=settings) as uow:
        command = _claim(uow, command_id)
        if command is None:
            return Outcome("FINISHED", [])
        commands_db.finish(uow.conn, command_id, status=Status.FAILED, error=error.as_dict())
        resource_type, resource_id, user_id = _subject(command.kind, command.payload)
        uow.audit(f"command.{command.kind}", resource_type, resource_id, user_id=user_id,
                  after={"request": command.payload}, result="FAILURE", error=error.as_dict())
        uow.notify(DONE_CHANNEL, command_id)
        uow.commit()
        return Outcome(Status.FAILED, list(uow.messages), command.kind, _age(command))


def _age(command: commands_db.Command) -> float:
    return max(0.0, (datetime.now(UTC) - command.created_at).total_seconds())


def _claim(uow: UnitOfWork, command_id: str) -> commands_db.Command | None:
    """The pending command, row-locked, with the unit of work's context taken from it."""
    command = commands_db.lock(uow.conn, command_id)
    if command is None or command.status != Status.PENDING:
        return None
    logs.bind(command_id=command.id, request_id=command.request_id, command_kind=command.kind)
    uow.context = Context(correlation_id=command.request_id, actor_type=command.actor_type,
                          actor_id=command.actor_id, command_id=command.id,
                          idempotency_key=command.idempotency_key, request_id=command.request_id)
    return command
