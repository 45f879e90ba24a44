"""Rotating the wallet encryption key (``offerhub wallets rotate-key``) while the system runs.

Procedure:

1. Generate a new key (base64 of 32 random bytes, e.g. ``openssl rand -base64 32``).
2. Set ``WALLET_ENCRYPTION_KEY`` to the new key and ``WALLET_ENCRYPTION_KEY_PREVIOUS`` to the old one.
3. Restart every process (web, workers, monitor, scheduler). From now on new wallets are sealed under
   the new key, and signing opens a secret under whichever of the two keys sealed it (its key version
   is the key's fingerprint), so nothing stops during the rotation.
4. Run ``python -m orchestrator wallets rotate-key``. It re-seals, in batches, every secret whose key
   version is not the current key's: each batch is one transaction holding row locks on its wallets,
   so a concurrent signer reads either the old or the new sealed secret, both of which open. It
   prints how many secrets it re-sealed and how many were already current; run it again until it
   re-seals nothing (an interrupted or repeated run is safe: current secrets are left alone).
5. Remove ``WALLET_ENCRYPTION_KEY_PREVIOUS`` and restart. Keep the old key offline until you have
   confirmed that signing works, then destroy it.

A secret that neither key opens (sealed under a third key, or tampered with) is left untouched and
named by its wallet id, so the operator can supply the right previous key and run again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator import crypto
from orchestrator.db import session
from orchestrator.db import wallets as wallets_db
from orchestrator.outbox import webhooks

log = logging.getLogger(__name__)

BATCH_SIZE = 100


@dataclass
class RotationResult:
    resealed: int = 0
    current: int = 0
    unopened: list[str] = field(default_factory=list)  # wallet ids whose secret no configured key opens

    @property
    def complete(self) -> bool:
        return not self.unopened


def rotate(engine: Any, keyring: crypto.Keyring, *, batch_size: int = BATCH_SIZE) -> RotationResult:
    """Re-seal every wallet secret not sealed under ``keyring.current``; one transaction per batch."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    result = RotationResult()
    after = ""
    while True:
        with session.transaction(engine) as conn:
            page = wallets_db.sealed_page(conn, after=after, limit=batch_size)
            if not page:
                break
            for wallet_id, public_key, ciphertext, nonce, version in page:
                if version == keyring.version:
                    result.current += 1
                    continue
                try:
                    sealed = crypto.reseal(keyring, crypto.Sealed(ciphertext, nonce, version), public_key=public_key)
                except crypto.SealError:
                    result.unopened.append(wallet_id)
                    continue
                wallets_db.reseal(conn, wallet_id, ciphertext=sealed.ciphertext, nonce=sealed.nonce,
                                  key_version=sealed.key_version)
                result.resealed += 1
            conn.commit()
            after = page[-1][0]
        log.info("key rotation: %d re-sealed, %d already current so far", result.resealed, result.current)
    # webhook endpoint secrets are sealed with the same key (DESIGN decision 28): re-sealed alike
    resealed, current, unopened = webhooks.reseal_all(engine, keyring)
    result.resealed, result.current = result.resealed + resealed, result.current + current
    result.unopened.extend(unopened)
    if result.unopened:
        log.warning("key rotation: %d wallet secret(s) open under neither configured key", len(result.unopened))
    return result
