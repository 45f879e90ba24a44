"""Driving top-ups and AirTM withdrawals from AirTM's answers: creates, reads and webhooks.

These run in actors (and the scheduler's sweep), never inside a database transaction: AirTM is
called first, then one unit of work applies what it said (``topups.apply_payin``,
``airtm_withdrawals.apply_payout``), forward only. Whatever path reports a status first wins; the
others find nothing left to do, which is what makes duplicated, reordered and lost webhooks harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from orchestrator import audit
from orchestrator.airtm import topups
from orchestrator.airtm import withdrawals as airtm_withdrawals
from orchestrator.db import airtm as airtm_db
from orchestrator.db import session
from orchestrator.db import topups as topups_db
from orchestrator.db import withdrawals as withdrawals_db
from orchestrator.payloads import Payload
from orchestrator.providers.airtm import AirtmClient, AirtmFailure
from orchestrator.results import Result
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, Message, UnitOfWork

log = logging.getLogger(__name__)


def _read(engine: Any, fn: Any) -> Any:
    with session.transaction(engine) as conn:
        return fn(conn)


def callback_url(settings: Settings, topup_id: str) -> str:
    return f"{settings.public_base_url}/api/v1/topups/{topup_id}/callback"


def _definite(failure: AirtmFailure) -> bool:
    """A final refusal: nothing was created and nothing will be (anything unclear is retried, then read by
    code; AirTM's "retry later", 415008, is retried too and never fails the record)."""
    return not (failure.ambiguous or failure.retry_later
                or failure.code in ("PROVIDER_RATE_LIMITED", "PROVIDER_TIMEOUT"))


def create_payin(engine: Any, settings: Settings, topup_id: str, flow: str = "") -> list[Message]:
    """Create (or adopt) the top-up's pay-in and apply its status; a refusal fails the top-up."""
    topup = _read(engine, lambda conn: topups_db.get(conn, topup_id))
    if topup is None:
        return []
    if topup.status != topups.Status.CREATED or topup.airtm_payin_id is not None:
        return _finish(engine, settings, flow, topup.id)
    try:
        with AirtmClient(settings) as client:
            payin = client.ensure_payin(code=topup.id, amount=topup.amount,
                                        description=topup.description or f"Top-up {topup.id}",
                                        callback_url=callback_url(settings, topup.id))
    except AirtmFailure as failure:
        if not _definite(failure):
            _unclear(engine, settings, flow, failure, {"topupId": topup.id})
            raise  # the actor retries; the sweep re-drives it later; lookup by code prevents a twin
        with UnitOfWork(engine, settings=settings) as uow:
            topups.fail_creation(uow, topup.id, reason=failure.message, error_code=failure.reason_code)
            topups.finish_flow(uow, flow, failed=failure.public().as_dict(), resource_id=topup.id)
            uow.commit()
            return list(uow.messages)
    with UnitOfWork(engine, settings=settings) as uow:
        topups.apply_payin(uow, topup.id, payin, checkout_base=settings.airtm_checkout_base_url)
        topups.finish_flow(uow, flow, resource_id=topup.id)
        uow.commit()
        return list(uow.messages)


def create_payout(engine: Any, settings: Settings, withdrawal_id: str, flow: str = "") -> list[Message]:
    """Create (or adopt) the withdrawal's payout, commit it when asked, and apply its status."""
    withdrawal = _read(engine, lambda conn: withdrawals_db.get(conn, withdrawal_id))
    if withdrawal is None:
        return []
    messages: list[Message] = []
    with AirtmClient(settings) as client:
        if withdrawal.status == airtm_withdrawals.W.CREATED and withdrawal.airtm_payout_id is None:
            link = _read(engine, lambda conn: conn.execute(airtm_db.link_of(withdrawal.user_id)).first())
            try:
                payout = client.ensure_payout(
                    code=withdrawal.id, email=link.airtm_email, amount=withdrawal.amount,
                    notes=f"Withdrawal {withdrawal.id}", commit=withdrawal.commit_requested,
                    internal_note=f"{withdrawal.destination_type}:{withdrawal.destination_ref}")
            except AirtmFailure as failure:
                if not _definite(failure):
                    _unclear(engine, settings, flow, failure, {"withdrawalId": withdrawal.id})
                    raise
                if failure.reason_code == "415016":
                    log.error("ALERT treasury: the AirTM enterprise balance is too low for withdrawal %s",
                              withdrawal.id)
                with UnitOfWork(engine, settings=settings) as uow:
                    airtm_withdrawals.fail_creation(uow, withdrawal.id, reason=failure.message,
                                                    error_code=failure.reason_code)
                    topups.finish_flow(uow, flow, failed=failure.public().as_dict() | {
                        "details": {**failure.public().details, "withdrawalId": withdrawal.id}},
                        resource_id=withdrawal.id)
                    uow.commit()
                    return list(uow.messages)
            messages += _apply_payout(engine, settings, withdrawal.id, payout)
            withdrawal = _read(engine, lambda conn: withdrawals_db.get(conn, withdrawal_id))
        if (withdrawal.status == airtm_withdrawals.W.CREATED and withdrawal.commit_requested
                and withdrawal.airtm_payout_id is not None):
            messages += _apply_payout(engine, settings, withdrawal.id,
                                      client.commit_payout(withdrawal.airtm_payout_id))
    return messages + _finish(engine, settings, flow, withdrawal_id)


def _unclear(engine: Any, settings: Settings, flow: str, failure: AirtmFailure, ids: dict[str, str]) -> None:
    """AirTM did not answer clearly even after the lookups by code: the waiting request gets the error
    now (504/502: the operation may still have happened, read the resource), and the record stays as it
    is until a retry or the sweep learns the outcome; nothing is failed or refunded on a guess."""
    if not flow:
        return
    with UnitOfWork(engine, settings=settings) as uow:
        error = failure.as_dict()
        topups.finish_flow(uow, flow, failed=error | {"details": {**error["details"], **ids, "pending": True}})
        uow.commit()


def _apply_payout(engine: Any, settings: Settings, withdrawal_id: str, payout: dict[str, Any],
                  canceled_by: str = "system") -> list[Message]:
    with UnitOfWork(engine, settings=settings) as uow:
        airtm_withdrawals.apply_payout(uow, withdrawal_id, payout, canceled_by=canceled_by)
        uow.commit()
        return list(uow.messages)


def _finish(engine: Any, settings: Settings, flow: str, resource_id: str) -> list[Message]:
    """End the creating request's flow: the actor knows it; the periodic refresh finds it by the record."""
    with UnitOfWork(engine, settings=settings) as uow:
        topups.finish_flow(uow, flow, resource_id=resource_id)
        uow.commit()
        return list(uow.messages)


def refresh_topup(engine: Any, settings: Settings, topup_id: str) -> list[Message]:
    """Re-read an open top-up's pay-in (a lost webhook); a pay-in never created is created now."""
    topup = _read(engine, lambda conn: topups_db.get(conn, topup_id))
    if topup is None or topup.status in topups.TERMINAL:
        return []
    if topup.airtm_payin_id is None and topup.status == topups.Status.CREATED:
        return create_payin(engine, settings, topup_id)
    with AirtmClient(settings) as client:
        payin = client.payin(topup.airtm_payin_id) if topup.airtm_payin_id else client.payin_by_code(topup.id)
    if payin is None:
        return []
    with UnitOfWork(engine, settings=settings) as uow:
        topups.apply_payin(uow, topup.id, payin, checkout_base=settings.airtm_checkout_base_url)
        uow.commit()
        return list(uow.messages)


def refresh_withdrawal(engine: Any, settings: Settings, withdrawal_id: str) -> list[Message]:
    """Re-read an open AirTM withdrawal's payout; a payout never created (or committed) is driven on."""
    withdrawal = _read(engine, lambda conn: withdrawals_db.get(conn, withdrawal_id))
    if withdrawal is None or withdrawal.destination_type == "crypto" or withdrawal.status in airtm_withdrawals.TERMINAL:
        return []
    if withdrawal.status == airtm_withdrawals.W.CREATED and (
            withdrawal.airtm_payout_id is None or withdrawal.commit_requested):
        return create_payout(engine, settings, withdrawal_id)
    with AirtmClient(settings) as client:
        payout = (client.payout(withdrawal.airtm_payout_id) if withdrawal.airtm_payout_id
                  else client.payout_by_code(withdrawal.id))
    return [] if payout is None else _apply_payout(engine, settings, withdrawal.id, payout)


# Webhooks (providers.md §3.8)

def parse_webhook(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(event type, data)`` from either body shape: ``{type, data}`` or the original's
    ``{eventId, eventType, occurredAt, data}``; a missing status is read from the event type."""
    event_type = str(body.get("type") or body.get("eventType") or "")
    raw = body.get("data")
    data: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    if not data.get("status") and "." in event_type:
        data["status"] = event_type.split(".", 1)[1].upper()
    return event_type, data


def process_webhook(engine: Any, settings: Settings, message_id: str) -> list[Message]:
    """Apply one recorded message: find the resource by ``code``, then by ``id``; drive it by status.

    The delivery is audited (``webhook.received``) in the same transaction that applies it."""
    context = Context(actor_type="WEBHOOK", actor_id="airtm", correlation_id=message_id)
    with UnitOfWork(engine, settings=settings, context=context) as uow:
        message = airtm_db.lock_webhook(uow.conn, message_id)
        if message is None or message.status != "PENDING":
            return []
        event_type, data = parse_webhook(message.body)
        kind = event_type.split(".", 1)[0]
        code, object_id = str(data.get("code") or ""), str(data.get("id") or "")
        resource_type, resource_id, user_id, moved = "Webhook", None, None, False
        if kind == "payin":
            resource_type = "TopUp"
            found = topups_db.get(uow.conn, code) if code.startswith("topup_") else None
            resource_id = found.id if found else (topups_db.id_for_payin(uow.conn, object_id) if object_id else None)
            if resource_id is not None:
                user_id = (found or topups_db.get(uow.conn, resource_id)).user_id  # type: ignore[union-attr]
                moved = topups.apply_payin(uow, resource_id, data, checkout_base=settings.airtm_checkout_base_url)
        elif kind == "payout":
            resource_type = "Withdrawal"
            found_w = withdrawals_db.get(uow.conn, code) if code.startswith("wd_") else None
            resource_id = found_w.id if found_w else (
                airtm_db.withdrawal_for_payout(uow.conn, object_id) if object_id else None)
            if resource_id is not None:
                user_id = (found_w or withdrawals_db.get(uow.conn, resource_id)).user_id  # type: ignore[union-attr]
                moved = airtm_withdrawals.apply_payout(uow, resource_id, data)
        if resource_id is None:
            outcome, status = f"unknown resource for {event_type!r} (code {code!r}, id {object_id!r})", "IGNORED"
        else:
            outcome, status = f"{resource_id} {'moved' if moved else 'unchanged'}", "PROCESSED"
        audit.webhook_received(uow.conn, provider="airtm", delivery_id=message_id, event_type=event_type,
                               resource_type=resource_type, resource_id=resource_id, user_id=user_id,
                               body=message.body, outcome=outcome, result="SUCCESS" if resource_id else "FAILURE",
                               error=None if resource_id else {"code": "UNKNOWN_RESOURCE", "message": outcome})
        uow.after_commit(Message("relay_outbox"))  # the relay chains the audit entry
        airtm_db.finish_webhook(uow.conn, message_id, status=status, outcome=outcome)
        uow.commit()
        return list(uow.messages)


@dataclass(frozen=True)
class ApplyAirtm(Payload):
    """What AirTM reported about a top-up or a withdrawal (``resource`` ``topup``/``withdrawal``), from a
    webhook or a read."""

    resource: str
    id: str
    record: dict[str, Any]
    canceled_by: str = "system"


def apply_reported(uow: UnitOfWork, command: ApplyAirtm) -> Result:
    """The command behind refresh, cancel and commit requests: apply what the web tier read at AirTM."""
    resource, record = command.resource, command.record
    canceled_by = command.canceled_by
    if resource == "topup":
        checkout = uow.settings.airtm_checkout_base_url if uow.settings else ""
        topups.apply_payin(uow, command.id, record, checkout_base=checkout, canceled_by=canceled_by)
    else:
        airtm_withdrawals.apply_payout(uow, command.id, record, canceled_by=canceled_by)
    return Result(200, resource, command.id)
