"""The platform user: the marketplace's own account (dispute resolver, fee receiver, mainnet funder)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.db import users as users_db
from orchestrator.db import wallets as wallets_db
from orchestrator.errors import ConfigError
from orchestrator.settings import Settings

#: The platform user's ``externalUserId`` (cli-sdk.md §2.4).
EXTERNAL_ID = "offerhub-platform"


@dataclass(frozen=True)
class Platform:
    user_id: str
    wallet: wallets_db.Wallet | None


def find(conn: Any, settings: Settings) -> Platform | None:
    """The platform user named by ``PLATFORM_USER_ID``, or the one bootstrap created."""
    user_id = settings.platform_user_id or users_db.id_for_external(conn, EXTERNAL_ID)
    if user_id is None or conn.execute(users_db.exists(user_id)).first() is None:
        return None
    return Platform(user_id, wallets_db.of_user_now(conn, user_id))


def public_key(conn: Any, settings: Settings) -> str:
    found = find(conn, settings)
    if found is None or found.wallet is None:
        raise ConfigError(["the platform user or its wallet is missing: run `python -m orchestrator bootstrap`"])
    return found.wallet.public_key


def bootstrap(engine: Any, settings: Settings) -> tuple[str, bool, list[Any]]:
    """Create the platform user (and, in crypto mode, its wallet) unless it exists.

    Returns the user id, whether it was created now, and the after-commit messages (the wallet's
    activation steps) for the caller to send.
    """
    from orchestrator import users
    from orchestrator.unit_of_work import Context, UnitOfWork

    with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id="bootstrap"), settings=settings) as uow:
        existing = find(uow.conn, settings)
        if existing is not None:
            return existing.user_id, False, []
        result = users.create(uow, {"externalUserId": EXTERNAL_ID, "type": "BOTH"})
        uow.commit()
    return result.id, True, list(uow.messages)
