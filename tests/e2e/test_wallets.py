"""Invisible wallets: created with the user, sealed, activated on the ledger by chain steps."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sqlalchemy import Engine, text
from stellar_sdk import Keypair, StrKey

from orchestrator import crypto
from orchestrator.settings import Settings
from tests.api import Api
from tests.fixtures.sandbox import SandboxControl


async def wallet_status(engine: Engine, user_id: str, wanted: str = "ACTIVE", seconds: float = 20) -> dict:
    for _ in range(int(seconds * 10)):
        with engine.connect() as conn:
            row = conn.execute(text("SELECT * FROM wallets WHERE user_id = :u"), {"u": user_id}).mappings().first()
        if row is not None and row["status"] == wanted:
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"wallet of {user_id} never reached {wanted}: {row}")


async def test_a_new_user_gets_a_sealed_wallet_that_is_activated_with_a_usdc_trustline(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings) -> None:
    user = await api.user()
    wallet = await wallet_status(engine, user["id"])
    # the secret is sealed: the stored text is no secret seed, and it opens only with the key (the base64 of
    # the ciphertext began with "S" once in 64 runs, so that is no test of it)
    sealed = crypto.Sealed(wallet["sealed_secret"], wallet["nonce"], wallet["key_version"])
    assert not StrKey.is_valid_ed25519_secret_seed(sealed.ciphertext)
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key)
    secret = crypto.open_sealed(keyring, sealed, public_key=wallet["public_key"])
    assert Keypair.from_secret(secret).public_key == wallet["public_key"]
    with pytest.raises(crypto.SealError):
        crypto.open_sealed(crypto.Keyring(secrets.token_bytes(32)), sealed, public_key=wallet["public_key"])
    account = ledger.http.get(f"{ledger.horizon_url}/accounts/{wallet['public_key']}").json()
    assert any(b.get("asset_code") == "USDC" for b in account["balances"])
    with engine.connect() as conn:
        events = conn.execute(text("SELECT event_type FROM outbox WHERE aggregate_id = :w ORDER BY id"),
                              {"w": wallet["id"]}).scalars().all()
    assert events == ["wallet.created", "wallet.activated"]
