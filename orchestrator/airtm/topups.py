"""Top-ups (spec api.md §8, states.md §6, events.md §3.4): money in through an AirTM pay-in.

A top-up is recorded ``TOPUP_CREATED`` before AirTM is called, with its id as the pay-in's ``code``,
so a lost answer is found again by code and never makes a second pay-in. Every later change comes
from AirTM's status (a create's answer, a webhook, a read) through ``apply_payin``: states only move
forward by rank (providers.md §3.6, DESIGN decision 4), and ``TOPUP_SUCCEEDED`` credits
``available`` in the same transaction as the status change, so the credit happens exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from orchestrator import amounts, ids
from orchestrator.accounts import users
from orchestrator.db import commands as commands_db
from orchestrator.db import topups as topups_db
from orchestrator.errors import BusinessRuleViolation, InvalidStateTransition, NotFound, ProviderFailure
from orchestrator.money import balances, ledger
from orchestrator.money.ledger import AVAILABLE, user_account
from orchestrator.payloads import Payload
from orchestrator.providers.airtm import AirtmClient, AirtmFailure, amount_of
from orchestrator.results import Result
from orchestrator.unit_of_work import Message, UnitOfWork

log = logging.getLogger(__name__)


class Status(StrEnum):
    CREATED = "TOPUP_CREATED"
    AWAITING = "TOPUP_AWAITING_USER_CONFIRMATION"
    PROCESSING = "TOPUP_PROCESSING"
    SUCCEEDED = "TOPUP_SUCCEEDED"
    FAILED = "TOPUP_FAILED"
    CANCELED = "TOPUP_CANCELED"


T = Status
TERMINAL = frozenset({T.SUCCEEDED, T.FAILED, T.CANCELED})
#: providers.md §3.6: a provider-driven change applies only to a higher rank; terminal never changes.
RANK = {T.CREATED: 0, T.AWAITING: 1, T.PROCESSING: 2, T.SUCCEEDED: 3, T.FAILED: 3, T.CANCELED: 3}
#: AirTM pay-in status -> top-up status (§3.6), with the original's names as aliases.
PAYIN_STATUS = {
    "CREATED": T.AWAITING, "AWAITING_USER_CONFIRMATION": T.AWAITING, "PROCESSING": T.PROCESSING,
    "CONFIRMED": T.SUCCEEDED, "SUCCEEDED": T.SUCCEEDED, "FAILED": T.FAILED, "BRIDGE_FAILED": T.FAILED,
    "CANCELED": T.CANCELED, "BRIDGE_CANCELED": T.CANCELED,
}
#: The actor that creates the pay-in once the top-up row is committed.
CREATE_PAYIN = "airtm_create_payin"


@dataclass(frozen=True)
class CreateTopUp(Payload):
    """``POST /topups``; the redirect URLs filled from the instance's defaults when absent."""

    user_id: str
    amount: str
    return_url: str
    cancel_url: str
    currency: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


def create(uow: UnitOfWork, command: CreateTopUp) -> Result:
    """Record the top-up; the pay-in is created by an actor after this commits (``CREATE_PAYIN``)."""
    topup_id, user_id, amount = ids.new_id("topup"), command.user_id, Decimal(command.amount)
    if users.require_backing(uow.conn, user_id, users.Backing.AIRTM).airtm_user_id is None:
        raise BusinessRuleViolation("The user has no linked AirTM account", code="AIRTM_USER_NOT_LINKED")
    topups_db.create(uow.conn, id=topup_id, user_id=user_id, amount=amount, status=T.CREATED,
                     return_url=command.return_url, cancel_url=command.cancel_url,
                     description=command.description, metadata=command.metadata)
    uow.emit("topup.created", topup_id, {"topupId": topup_id, "userId": user_id,
                                         "amount": amounts.format_amount(amount), "currency": "USD"},
             user_id=user_id)
    flow = uow.context.command_id or ""
    if flow:
        commands_db.start_flow(uow.conn, flow)
    uow.after_commit(Message(CREATE_PAYIN, (topup_id, flow)))
    return Result(201, "topup", topup_id, {"flow": True})


def apply_payin(uow: UnitOfWork, topup_id: str, payin: dict[str, Any], *, checkout_base: str,
                canceled_by: str = "system") -> bool:
    """Move the top-up to what the pay-in's status says, if that is forward; True when it moved."""
    topup = topups_db.get(uow.conn, topup_id, for_update=True)
    if topup is None:
        raise NotFound(f"Top-up {topup_id} not found", code="TOPUP_NOT_FOUND")
    payin_id = payin.get("id")
    if topup.airtm_payin_id is None and payin_id:
        topups_db.update_fields(uow.conn, topup.id, airtm_payin_id=str(payin_id),
                                confirmation_uri=f"{checkout_base}{payin_id}")
    fee = topup.airtm_fee
    if fee is None:
        fee = reported_fee(payin)
        if fee is not None:
            topups_db.update_fields(uow.conn, topup.id, airtm_fee=fee)
            if topup.status == T.SUCCEEDED:  # credited by a report that did not carry the fee
                journal_fee(uow, topup, fee)
    raw = str(payin.get("status", "")).upper()
    target = PAYIN_STATUS.get(raw)
    if target is None:
        log.warning("Top-up %s: AirTM pay-in status %r is unknown; no transition", topup.id, raw)
        return False
    current = Status(topup.status)
    if current in TERMINAL or RANK[target] <= RANK[current]:
        return False  # a late, repeated or backward report: acknowledged and ignored
    reason = payin.get("failureReason") or payin.get("reasonDescription")
    values: dict[str, Any] = {"failure_reason": str(reason)[:500]} if target == T.FAILED and reason else {}
    if not topups_db.set_status(uow.conn, topup.id, expected=current, status=target, **values):
        return False
    _emit(uow, topup, target, str(payin_id or topup.airtm_payin_id or ""), checkout_base, reason=reason,
          error_code=payin.get("reasonCode"), canceled_by=canceled_by)
    finish_flow(uow, "", resource_id=topup.id)  # AirTM has the pay-in: the creating request is answered
    if target == T.SUCCEEDED and fee is not None:
        journal_fee(uow, topup, fee)
    return True


#: The states a user may cancel a top-up from: AirTM has a pay-in the buyer has not confirmed yet.
CANCELLABLE = (T.AWAITING,)


def require_cancellable(topup: topups_db.TopUp) -> str:
    """The pay-in to cancel at AirTM; anything but a top-up awaiting its buyer is the spec's state error."""
    if topup.status not in CANCELLABLE or topup.airtm_payin_id is None:
        raise InvalidStateTransition(resource="topup", id=topup.id, current=topup.status, action="cancel",
                                     allowed=CANCELLABLE)
    return topup.airtm_payin_id


@dataclass(frozen=True)
class CancelAnswer:
    """What AirTM said to a cancel: the pay-in as it stands now (``None``: unknown) and AirTM's refusal."""

    topup_id: str
    record: dict[str, Any] | None
    problem: str | None

    @property
    def reported(self) -> Status | None:
        return PAYIN_STATUS.get(str((self.record or {}).get("status", "")).upper())

    @property
    def canceled(self) -> bool:
        """DESIGN decision 3: canceled only when AirTM confirms it (or a re-read shows it)."""
        return self.reported == T.CANCELED

    @property
    def moved_on(self) -> bool:
        """The pay-in went past awaiting meanwhile: what it reports is recorded, and the cancel refused."""
        return self.reported is not None and self.reported not in (T.AWAITING, T.CANCELED)

    def refusal(self) -> InvalidStateTransition | ProviderFailure:
        """The error a cancel that did not happen answers."""
        if self.moved_on:
            assert self.reported is not None
            return InvalidStateTransition(resource="topup", id=self.topup_id, current=self.reported,
                                          action="cancel", allowed=CANCELLABLE)
        return ProviderFailure(f"AirTM did not confirm the cancel: {self.problem or 'the pay-in is still open'}",
                               details={"provider": "airtm"})


def cancel_at_airtm(client: AirtmClient, topup_id: str, payin_id: str) -> CancelAnswer:
    """Ask AirTM to cancel the pay-in, then read what it holds (a refusal may come from a pay-in that moved
    on, and a cancel's answer may carry no status). Blocking: callers run it off their event loop."""
    try:
        answer = client.cancel_payin(payin_id)
    except AirtmFailure as failure:
        log.warning("AirTM refused to cancel pay-in %s of %s: %s", payin_id, topup_id, failure.message)
        return CancelAnswer(topup_id, client.payin(payin_id), failure.message)
    record = answer if isinstance(answer, dict) and answer.get("status") else client.payin(payin_id)
    return CancelAnswer(topup_id, record, None)


def reported_fee(payin: dict[str, Any]) -> Decimal | None:
    """AirTM's fee on the pay-in (``airtmFee``, else ``amount - netAmount``); ``None`` when the report
    does not say (the original's webhook shape carries no fee)."""
    try:
        if payin.get("airtmFee") is not None:
            fee = amount_of(payin["airtmFee"])
        elif payin.get("netAmount") is not None and payin.get("amount") is not None:
            fee = amount_of(payin["amount"]) - amount_of(payin["netAmount"])
        else:
            return None
    except (ArithmeticError, ValueError, TypeError):
        log.warning("Pay-in %s: unreadable fee in %r", payin.get("id"), payin)
        return None
    if fee < 0:
        log.warning("Pay-in %s: negative fee %s ignored", payin.get("id"), fee)
        return None
    return amounts.quantize(fee)


def journal_fee(uow: UnitOfWork, topup: topups_db.TopUp, fee: Decimal) -> None:
    """The platform's expense for AirTM's fee (once: when the top-up has succeeded and its fee is known):
    the user was credited ``amount`` but the enterprise account received ``amount - fee``, so the
    book's claim on AirTM (``world:airtm``) shrinks by the fee, charged to the platform."""
    if fee > 0:
        ledger.transfer(uow, kind="airtm_fee", amount=fee, reference=topup.id, source=ledger.AIRTM_FEES,
                        destination=ledger.WORLD_AIRTM, description=f"AirTM fee on top-up {topup.id}")


def _emit(uow: UnitOfWork, topup: topups_db.TopUp, target: Status, payin_id: str, checkout_base: str, *,
          reason: Any, error_code: Any, canceled_by: str) -> None:
    base = {"topupId": topup.id, "userId": topup.user_id}
    amount = amounts.format_amount(topup.amount)
    if target == T.AWAITING:
        uow.emit("topup.confirmation_required", topup.id, {
            **base, "confirmationUri": f"{checkout_base}{payin_id}", "expiresAt": None}, user_id=topup.user_id)
    elif target == T.PROCESSING:
        uow.emit("topup.processing", topup.id, {**base, "airtmPayinId": payin_id}, user_id=topup.user_id)
    elif target == T.SUCCEEDED:
        changes = ledger.transfer(uow, kind="topup", amount=topup.amount, reference=topup.id, source=ledger.WORLD_AIRTM,
                                  destination=user_account(topup.user_id, AVAILABLE))
        change = changes[topup.user_id]
        shown = amounts.format_balance(change.available)
        uow.emit("topup.succeeded", topup.id, {**base, "amount": amount, "currency": "USD", "airtmPayinId": payin_id,
                                               "newAvailableBalance": shown, "newBalance": shown},
                 user_id=topup.user_id)
        balances.emit_credited(uow, change, topup.amount, source="topup", source_id=topup.id)
    elif target == T.FAILED:
        uow.emit("topup.failed", topup.id, {**base, "amount": amount, "reason": str(reason or "failed at AirTM"),
                                            "errorCode": error_code, "airtmPayinId": payin_id or None},
                 user_id=topup.user_id)
    elif target == T.CANCELED:
        uow.emit("topup.canceled", topup.id, {**base, "amount": amount, "canceledBy": canceled_by,
                                              "reason": reason}, user_id=topup.user_id)


def fail_creation(uow: UnitOfWork, topup_id: str, *, reason: str, error_code: str | None) -> bool:
    """AirTM refused the pay-in (states.md §6.2 ``CREATED -> FAILED``); no money had moved."""
    topup = topups_db.get(uow.conn, topup_id, for_update=True)
    if topup is None or topup.status != T.CREATED:
        return False
    topups_db.set_status(uow.conn, topup.id, expected=T.CREATED, status=T.FAILED, failure_reason=reason[:500])
    uow.emit("topup.failed", topup.id, {"topupId": topup.id, "userId": topup.user_id,
                                        "amount": amounts.format_amount(topup.amount), "reason": reason,
                                        "errorCode": error_code, "airtmPayinId": None}, user_id=topup.user_id)
    return True


def finish_flow(uow: UnitOfWork, command_id: str, failed: dict[str, Any] | None = None, *,
                resource_id: str | None = None) -> None:
    """End the flow of the request that created the record, and wake it.

    Without ``command_id`` (the periodic refresh or a webhook settled a record whose create message was
    lost or gave up without an outcome), the flow is found by the record its command created, so the
    request never stays ``RUNNING`` (answering 202 to every replay) once the record is settled."""
    flows = [command_id] if command_id else (
        commands_db.running_flows(uow.conn, resource_id) if resource_id else [])
    for flow in flows:
        commands_db.finish_flow(uow.conn, flow, failed=failed)
        commands_db.notify_done(uow.conn, flow)
