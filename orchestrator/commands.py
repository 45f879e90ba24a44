"""Commands: the durable record of every write request, and the one function that executes them.

The web tier records a command row and publishes a message naming it; an actor calls ``execute``. The
command row is locked for the whole transaction and its status is checked first, so a redelivered
or republished message finds the command done and changes nothing: the database decides once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from orchestrator import logs
from orchestrator.accounts import api_keys, users
from orchestrator.airtm import links, sync, topups
from orchestrator.airtm import withdrawals as airtm_withdrawals
from orchestrator.db import commands as commands_db
from orchestrator.db import session
from orchestrator.errors import InternalError, OrchestratorError
from orchestrator.escrow import disputes, escrows, orders
from orchestrator.money import balances
from orchestrator.operations import maintenance
from orchestrator.payloads import Payload
from orchestrator.payments import withdrawals
from orchestrator.payments.withdrawal_states import CreateWithdrawal
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


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Route(Generic[P]):
    """A command kind's payload type and the handler that takes it (mypy checks that they agree)."""

    payload: type[P]
    handler: Callable[[UnitOfWork, P], Result]

    def run(self, uow: UnitOfWork, stored: Mapping[str, Any]) -> Result:
        return self.handler(uow, self.payload.from_payload(stored))


def create_withdrawal(uow: UnitOfWork, command: CreateWithdrawal) -> Result:
    """One resource, two paths (states.md §7): ``crypto`` pays from the user's wallet on the ledger, any
    other destination is an AirTM payout. Each path refuses a user of the other backing itself."""
    if command.destination_type == "crypto":
        return withdrawals.create(uow, command)
    return airtm_withdrawals.create(uow, command)


HANDLERS: dict[str, Route[Any]] = {
    Kind.CREATE_USER: Route(users.CreateUser, users.create),
    Kind.CREATE_API_KEY: Route(api_keys.CreateApiKey, api_keys.create),
    Kind.REVOKE_API_KEY: Route(api_keys.RevokeApiKey, api_keys.revoke),
    Kind.ADJUST_BALANCE: Route(balances.AdjustBalance, balances.admin_operation),
    Kind.ENABLE_MAINTENANCE: Route(maintenance.EnableMaintenance, maintenance.enable),
    Kind.DISABLE_MAINTENANCE: Route(maintenance.DisableMaintenance, maintenance.disable),
    Kind.CREATE_ORDER: Route(orders.CreateOrder, orders.create),
    Kind.RESERVE_ORDER: Route(orders.ReserveOrder, orders.reserve),
    Kind.CANCEL_ORDER: Route(orders.CancelOrder, orders.cancel),
    Kind.CREATE_ESCROW: Route(escrows.CreateEscrow, escrows.create),
    Kind.FUND_ESCROW: Route(escrows.FundEscrow, escrows.fund),
    Kind.RELEASE_ORDER: Route(escrows.ReleaseOrder, escrows.release),
    Kind.REFUND_ORDER: Route(escrows.RefundOrder, escrows.refund),
    Kind.COMPLETE_MILESTONE: Route(orders.CompleteMilestone, orders.complete_milestone),
    Kind.OPEN_DISPUTE: Route(disputes.OpenDispute, disputes.open_dispute),
    Kind.ASSIGN_DISPUTE: Route(disputes.AssignDispute, disputes.assign),
    Kind.RESOLVE_DISPUTE: Route(disputes.ResolveDispute, disputes.resolve),
    Kind.CREATE_WITHDRAWAL: Route(CreateWithdrawal, create_withdrawal),
    Kind.LINK_AIRTM: Route(links.LinkAirtm, links.link),
    Kind.CREATE_TOPUP: Route(topups.CreateTopUp, topups.create),
    Kind.APPLY_AIRTM: Route(sync.ApplyAirtm, sync.apply_reported),
}


def check_payload(kind: str, payload: Mapping[str, Any]) -> None:
    """Refuse, before it is recorded, a payload its kind's handler could not read (the web tier's check:
    a field the schema produces but the payload type lacks is a bug, found here rather than in a worker)."""
    HANDLERS[kind].payload.from_payload(payload, strict=True)


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


def execute(engine: Any, command_id: str, settings: Any = None, *, first_delivery: bool = False) -> Outcome:
    """Run the command once: lock it, apply its handler, record the result, notify, commit.

    A domain error rolls the whole transaction back and its outcome is stored by a second, short
    transaction (a failure is the rare path; a savepoint on every command cost two round trips).
    Any other exception propagates, leaving the command pending for the queue's retry (or the
    sweep) to run again.

    The attempt is counted in a transaction of its own, so a delivery that kills its process still
    counts; except on a message's ``first_delivery`` (not redelivered by the broker, not a retry),
    where the command's own transaction counts it: should that delivery die, the broker's redelivery
    is counted on its own, so a command that always kills its worker still ends after
    ``MAX_ATTEMPTS`` + 1 deliveries, and the common case saves a transaction.
    """
    attempts = None if first_delivery else count_attempt(engine, command_id)
    try:
        return _attempt(engine, command_id, settings, attempts)
    except OrchestratorError as error:
        return _record_failure(engine, command_id, settings, error)


def _attempt(engine: Any, command_id: str, settings: Any, counted: int | None) -> Outcome:
    with UnitOfWork(engine, settings=settings) as uow:
        command = _claim(uow, command_id, count=counted is None)
        if command is None:
            return Outcome("FINISHED", [])
        attempts = command.attempts if counted is None else counted
        if attempts > MAX_ATTEMPTS:
            raise InternalError(f"command failed after {MAX_ATTEMPTS} attempts")
        result = HANDLERS[command.kind].run(uow, command.payload)
        commands_db.finish(uow.conn, command.id, status=Status.DONE, result=result.as_dict())
        commands_db.notify_done(uow.conn, command_id)
        uow.commit()
        return Outcome(Status.DONE, list(uow.messages), command.kind, _age(command))


#: Payload fields that name what a command acts on, most specific first: the audit resource type, and
#: the renderer (``web/render.py``) that shows that resource as it stands (None: the field names no
#: resource the command answers with, e.g. an order's buyer).
_SUBJECTS = (("withdrawalId", "Withdrawal", "withdrawal"), ("disputeId", "Dispute", "dispute"),
             ("orderId", "Order", "order"), ("keyId", "ApiKey", "api_key"), ("userId", "User", "user"),
             ("buyerId", "Order", None))
#: Commands that make what they answer with: before they run there is nothing to show. Their id is
#: drawn inside the command (a user, order, dispute, top-up, withdrawal; a link is the user's AirTM
#: fields, filled by the command), except an API key's, drawn by the web tier: its row exists only once
#: the command ran, which ``pending_subject`` leaves the reader to find out.
CREATES = frozenset({Kind.CREATE_USER, Kind.CREATE_ORDER, Kind.OPEN_DISPUTE, Kind.CREATE_WITHDRAWAL,
                     Kind.CREATE_TOPUP, Kind.LINK_AIRTM})


def pending_subject(kind: str, payload: dict[str, Any]) -> Result | None:
    """What a command that has not finished yet answers with (api.md §1.12's 202): the resource it
    acts on, named as its finished ``Result`` would name it, for the web tier to read as it stands.

    None for a command that creates its resource (``CREATES``). The same resource and view as the
    finished answer, so a 202 and the later 200 have one shape.
    """
    if kind in CREATES:
        return None
    if kind in (Kind.ENABLE_MAINTENANCE, Kind.DISABLE_MAINTENANCE):
        return Result(202, "maintenance", "1")
    if kind == Kind.APPLY_AIRTM:  # what AirTM reported about a top-up or a withdrawal
        return Result(202, str(payload["resource"]), str(payload["id"]))
    if kind == Kind.CREATE_API_KEY:
        return Result(202, "api_key", str(payload["id"]))
    if kind == Kind.ADJUST_BALANCE:
        return Result(202, "balance", str(payload["userId"]), {"operation": payload["operation"]})
    if kind == Kind.COMPLETE_MILESTONE:  # the milestone by its order and reference (its id is not sent)
        return Result(202, "milestone", str(payload["orderId"]), {"milestoneRef": payload["milestoneRef"]})
    for name, _, resource in _SUBJECTS:
        if resource is not None and isinstance(payload.get(name), str):
            return Result(202, resource, payload[name])
    return None


def _subject(kind: str, payload: dict[str, Any]) -> tuple[str, str | None, str | None]:
    """(resource type, resource id, user id) a failed command's audit entry names."""
    user_id = payload.get("userId") or payload.get("buyerId")
    if kind in (Kind.ENABLE_MAINTENANCE, Kind.DISABLE_MAINTENANCE):
        return "Maintenance", None, None
    for name, resource_type, _ in _SUBJECTS:
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
        commands_db.notify_done(uow.conn, command_id)
        uow.commit()
        return Outcome(Status.FAILED, list(uow.messages), command.kind, _age(command))


def _age(command: commands_db.Command) -> float:
    return max(0.0, (datetime.now(UTC) - command.created_at).total_seconds())


def _claim(uow: UnitOfWork, command_id: str, *, count: bool = False) -> commands_db.Command | None:
    """The pending command, row-locked (its attempt counted too, with ``count``), with the unit of
    work's context taken from it."""
    command = commands_db.lock(uow.conn, command_id, count=count)
    if command is None or command.status != Status.PENDING:
        return None
    logs.bind(command_id=command.id, request_id=command.request_id, command_kind=command.kind)
    uow.context = Context(correlation_id=command.request_id, actor_type=command.actor_type,
                          actor_id=command.actor_id, command_id=command.id,
                          idempotency_key=command.idempotency_key, request_id=command.request_id)
    return command
