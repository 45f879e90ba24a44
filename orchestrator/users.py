"""Users: created once per marketplace ``externalUserId``, each with a zero balance."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from orchestrator import ids, ledger, platform, wallets
from orchestrator.db import users as users_db
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork


class UserType(StrEnum):
    BUYER = "BUYER"
    SELLER = "SELLER"
    BOTH = "BOTH"


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    PENDING_VERIFICATION = "PENDING_VERIFICATION"


def create(uow: UnitOfWork, payload: dict[str, Any]) -> Result:
    """Create the user and its balance, or return the existing one for a known ``externalUserId``.

    The unique index decides races between concurrent creates: the loser answers 200 with the winner.
    """
    user_id = ids.new_id("user")
    created = users_db.create(uow.conn, id=user_id, external_user_id=payload["externalUserId"],
                              email=payload.get("email"), type=payload.get("type") or UserType.BOTH,
                              metadata=payload.get("metadata"))
    if not created:
        existing = users_db.id_for_external(uow.conn, payload["externalUserId"])
        assert existing is not None
        return Result(200, "user", existing)
    ledger.open_balance(uow, user_id)
    uow.emit("user.created", user_id, {
        "userId": user_id, "externalUserId": payload["externalUserId"], "email": payload.get("email"),
        "type": payload.get("type") or UserType.BOTH, "status": UserStatus.ACTIVE}, user_id=user_id)
    if uow.settings is not None and uow.settings.payment_provider == "crypto":
        wallets.create_for_user(uow, user_id, is_platform=payload["externalUserId"] == platform.EXTERNAL_ID)
    return Result(201, "user", user_id)
