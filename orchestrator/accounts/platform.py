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
#: The treasury pool and the settlement account (DESIGN decision 25): internal users whose wallets stand in
#: for AIRTM-backed parties in escrow roles. Their wallets carry a ``purpose``: their USDC is the pool's,
#: never a user's balance (not watched for deposits, not compared with a book).
TREASURY_EXTERNAL_ID = "offerhub-treasury-{n}"
SETTLEMENT_EXTERNAL_ID = "offerhub-settlement"
TREASURY, SETTLEMENT = "TREASURY", "SETTLEMENT"


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


#: The platform wallet's public key per database: it never changes once bootstrap made it, and every
#: payout step asks for it (three queries each time otherwise).
_KEYS: dict[tuple[str, str | None], str] = {}


def public_key(conn: Any, settings: Settings) -> str:
    cached = _KEYS.get((settings.database_url, settings.platform_user_id))
    if cached is not None:
        return cached
    found = find(conn, settings)
    if found is None or found.wallet is None:
        raise ConfigError(["the platform user or its wallet is missing: run `python -m orchestrator bootstrap`"])
    _KEYS[(settings.database_url, settings.platform_user_id)] = found.wallet.public_key
    return found.wallet.public_key


def pool_external_ids(settings: Settings) -> list[tuple[str, str]]:
    """(purpose, ``externalUserId``) of each treasury account (``TREASURY_ACCOUNTS``) and the settlement account."""
    return [*((TREASURY, TREASURY_EXTERNAL_ID.format(n=n)) for n in range(1, settings.treasury_accounts + 1)),
            (SETTLEMENT, SETTLEMENT_EXTERNAL_ID)]


def deployer_external_ids(settings: Settings) -> list[str]:
    """The ``externalUserId`` of each deployer account (``DEPLOYER_ACCOUNTS`` of them)."""
    return [DEPLOYER_EXTERNAL_ID.format(n=n) for n in range(1, settings.deployer_accounts + 1)]


def deployer_keys(conn: Any, settings: Settings) -> list[str]:
    """The deployer accounts ready to sign (wallet ACTIVE on the ledger)."""
    return wallets_db.active_keys_of_users(conn, users_db.ids_for_externals(conn, deployer_external_ids(settings)))
