"""Linking a user to an AirTM account (spec api.md §5.4, providers.md §3.3).

The web tier looks the e-mail up at AirTM and checks eligibility (``failure_reason``); the command
stores the link once. A second link with the same e-mail is a no-op; with another e-mail it is a
conflict (the spec's new rule), so a user's payouts never silently change recipient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.db import airtm as airtm_db
from orchestrator.errors import BusinessRuleViolation, Conflict, NotFound
from orchestrator.events import iso, now
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork


def failure_reason(account: dict[str, Any] | None) -> str | None:
    """Why an AirTM account cannot be linked or paid (``None``: eligible)."""
    if account is None:
        return "USER_NOT_FOUND"
    if str(account.get("status", "")).lower() != "active":
        return "USER_INACTIVE"
    if account.get("isVerified") is not True:
        return "USER_NOT_VERIFIED"
    return None


def check_eligible(account: dict[str, Any] | None) -> dict[str, Any]:
    """The account when it may be linked and paid; ``422 AIRTM_USER_INVALID`` otherwise."""
    reason = failure_reason(account)
    if reason is not None or account is None:
        raise BusinessRuleViolation("The AirTM account is not eligible", code="AIRTM_USER_INVALID",
                                    details={"failureReason": reason})
    return account


@dataclass(frozen=True)
class LinkAirtm(Payload):
    """``POST /users/{id}/airtm/link``, once AirTM named the account."""

    user_id: str
    email: str
    airtm_user_id: str


def link(uow: UnitOfWork, command: LinkAirtm) -> Result:
    user_id, email, airtm_user_id = command.user_id, command.email, command.airtm_user_id
    current = airtm_db.lock_link(uow.conn, user_id)
    if current is None:
        raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")
    if current.airtm_user_id is not None:
        if (current.email or "").lower() == email.lower():
            return Result(200, "airtm_link", user_id)
        raise Conflict("The user is already linked to another AirTM account", code="AIRTM_USER_ALREADY_LINKED",
                       details={"airtmUserId": current.airtm_user_id})
    moment = now()
    airtm_db.store_link(uow.conn, user_id, airtm_user_id=airtm_user_id, email=email, linked_at=moment)
    uow.emit("user.airtm_linked", user_id, {"userId": user_id, "airtmUserId": airtm_user_id,
                                            "linkedAt": iso(moment)}, user_id=user_id)
    return Result(200, "airtm_link", user_id)
