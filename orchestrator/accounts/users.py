"""Users: created once per marketplace ``externalUserId``, each with a zero balance."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator import ids
from orchestrator.accounts import platform, wallets
from orchestrator.db import users as users_db
from orchestrator.errors import BusinessRuleViolation, NotFound
from orchestrator.money import ledger
from orchestrator.payloads import Payload
from orchestrator.results import Result
from orchestrator.unit_of_work import UnitOfWork


class UserType(StrEnum):
    BUYER = "BUYER"
    SELLER = "SELLER"
    BOTH = "BOTH"


class Backing(StrEnum):
    """What a user's balance is a claim on (DESIGN decision 26): fixed when the user is created."""

    WALLET = "WALLET"
    AIRTM = "AIRTM"


class UserStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    PENDING_VERIFICATION = "PENDING_VERIFICATION"


def backing_for_new_users(settings: Any) -> Backing:
    """``PAYMENT_PROVIDER`` decides how new users are backed: AirTM mode backs them by the enterprise account."""
    return Backing.AIRTM if settings is not None and settings.payment_provider == "airtm" else Backing.WALLET


#: The money flow each backing uses: a user's money in and out follow its own backing (decision 26).
PROVIDER_OF = {Backing.WALLET: "crypto", Backing.AIRTM: "airtm"}


def require_backing(conn: Any, user_id: str, backing: Backing) -> users_db.Backing:
    """Refuse (``422 PROVIDER_NOT_ENABLED``, as the web tier answers) a money flow of ``backing`` for a user backed
    otherwise, whoever asks: the core's own guard, so no actor, replay or script can move a user's money through
    the other provider (DESIGN decision 26)."""
    found = users_db.backings(conn, [user_id]).get(user_id)
    if found is None:
        raise NotFound(f"User {user_id} not found", code="USER_NOT_FOUND")
    if found.backing != backing:
        raise BusinessRuleViolation(f"This user's balance is backed by {found.backing}: it does not use "
                                    f"{PROVIDER_OF[backing]} payments", code="PROVIDER_NOT_ENABLED",
                                    details={"provider": PROVIDER_OF[backing], "backing": found.backing})
    return found


@dataclass(frozen=True)
class CreateUser(Payload):
    """``POST /users``."""

    external_user_id: str
    email: str | None = None
    type: str | None = None
    metadata: dict[str, Any] | None = None


def create(uow: UnitOfWork, command: CreateUser, *, backing: Backing | None = None) -> Result:
    """Create the user and its balance, or return the existing one for a known ``externalUserId``.

    The unique index decides races between concurrent creates: the loser answers 200 with the winner.
    A ``WALLET``-backed user gets its wallet now; ``backing`` defaults to the mode in force (the
    platform's own accounts pass ``WALLET``: they hold USDC on the ledger in both modes).
    """
    backing = backing or backing_for_new_users(uow.settings)
    user_id = ids.new_id("user")
    created = users_db.create(uow.conn, id=user_id, external_user_id=command.external_user_id,
                              email=command.email, type=command.type or UserType.BOTH,
                              metadata=command.metadata, backing=backing)
    if not created:
        existing = users_db.id_for_external(uow.conn, command.external_user_id)
        assert existing is not None
        return Result(200, "user", existing)
    ledger.open_balance(uow, user_id)
    uow.emit("user.created", user_id, {
        "userId": user_id, "externalUserId": command.external_user_id, "email": command.email,
        "type": command.type or UserType.BOTH, "status": UserStatus.ACTIVE}, user_id=user_id)
    if backing == Backing.WALLET and uow.settings is not None and uow.settings.wallet_encryption_key:
        wallets.create_for_user(uow, user_id, is_platform=command.external_user_id == platform.EXTERNAL_ID)
    return Result(201, "user", user_id)
