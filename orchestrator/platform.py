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
#: The platform's deployer accounts: internal users whose wallets only sign escrow deploys (they hold
#: XLM for fees and no role in any contract), so deploys spread over several sequence numbers.
DEPLOYER_EXTERNAL_ID = "offerhub-deployer-{n}"


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
        user_id, created = (existing.user_id, False) if existing is not None else (
            users.create(uow, {"externalUserId": EXTERNAL_ID, "type": "BOTH"}).id, True)
        if settings.payment_provider == "crypto":
            for external_id in deployer_external_ids(settings):  # created once; known ones are found
                users.create(uow, {"externalUserId": external_id, "type": "BOTH"})
        uow.commit()
    return user_id, created, list(uow.messages)


def deployer_external_ids(settings: Settings) -> list[str]:
    """The ``externalUserId`` of each deployer account (``DEPLOYER_ACCOUNTS`` of them)."""
    return [DEPLOYER_EXTERNAL_ID.format(n=n) for n in range(1, settings.deployer_accounts + 1)]


def deployer_keys(conn: Any, settings: Settings) -> list[str]:
    """The deployer accounts ready to sign (wallet ACTIVE on the ledger)."""
    return wallets_db.active_keys_of_users(conn, users_db.ids_for_externals(conn, deployer_external_ids(settings)))
