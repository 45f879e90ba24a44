"""Bootstrap: the platform user and the platform-held accounts, made once per database.

Apart from ``platform`` because it creates users and wallets, which themselves read the platform user.
"""

from __future__ import annotations

from typing import Any

from orchestrator.accounts import platform, users, wallets
from orchestrator.db import wallets as wallets_db
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork


def bootstrap(engine: Any, settings: Settings) -> tuple[str, bool, list[Any]]:
    """Create the platform user and its wallet, the deployers, the treasury pool and the settlement account
    unless they exist, in both modes (decisions 16 and 25: escrow is the same in both); a second run changes
    nothing. Platform-held accounts are ``WALLET``-backed whatever the mode: they hold USDC on the ledger.

    Returns the user id, whether it was created now, and the after-commit messages (the wallets'
    activation steps) for the caller to send.
    """
    wallet_backed = users.Backing.WALLET
    with UnitOfWork(engine, Context(actor_type="SYSTEM", actor_id="bootstrap"), settings=settings) as uow:
        existing = platform.find(uow.conn, settings)
        user_id, created = (existing.user_id, False) if existing is not None else (
            users.create(uow, users.CreateUser(platform.EXTERNAL_ID, type="BOTH"), backing=wallet_backed).id, True)
        if settings.wallet_encryption_key:  # without it no platform-held wallet can be sealed (AirTM mode only)
            if existing is not None and existing.wallet is None:  # made in AirTM mode before it had a key
                wallets.create_for_user(uow, user_id, is_platform=True)
            for external_id in platform.deployer_external_ids(settings):  # created once; known ones are found
                users.create(uow, users.CreateUser(external_id, type="BOTH"), backing=wallet_backed)
            for purpose, external_id in platform.pool_external_ids(settings):
                made = users.create(uow, users.CreateUser(external_id, type="BOTH"), backing=wallet_backed)
                if made.status == 201:
                    wallet = wallets_db.of_user_now(uow.conn, made.id)
                    assert wallet is not None
                    wallets_db.mark(uow.conn, wallet.id, purpose=purpose)
        uow.commit()
    return user_id, created, list(uow.messages)
