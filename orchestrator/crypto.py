"""Sealing wallet secrets: AES-256-GCM, a fresh 96-bit nonce per seal, the public key as associated data.

A key's version is a short fingerprint of the key itself, stored beside each ciphertext, so a
rotation needs no version bookkeeping: during a rotation the previous key still opens what it sealed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SealError(Exception):
    """Raised when a secret cannot be opened: wrong key, tampered ciphertext or other associated data."""


@dataclass(frozen=True)
class Sealed:
    """A sealed secret as stored: base64 ciphertext (with tag), base64 nonce, key version."""

    ciphertext: str
    nonce: str
    key_version: str


@dataclass(frozen=True)
class Keyring:
    """The current key, and the previous one while a rotation is under way."""

    current: bytes = field(repr=False)
    previous: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """Versions only: a keyring printed in a log or a traceback must never show a key."""
        previous = key_version(self.previous) if self.previous else None
        return f"Keyring(current={self.version}, previous={previous})"

    @classmethod
    def from_settings(cls, current: str | None, previous: str | None = None) -> Keyring:
        if not current:
            raise ValueError("WALLET_ENCRYPTION_KEY is not set")
        return cls(decode_key(current), decode_key(previous) if previous else None)

    @property
    def version(self) -> str:
        return key_version(self.current)

    def key_for(self, version: str) -> bytes:
        for key in (self.current, self.previous):
            if key is not None and key_version(key) == version:
                return key
        raise SealError("no configured key matches the secret's key version")


def decode_key(text: str) -> bytes:
    """A 32-byte key given as base64 (44 characters) or hex (64 characters)."""
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("the wallet encryption key must be 32 bytes in base64 or hex") from None
    if len(raw) != 32:
        raise ValueError("the wallet encryption key must be 32 bytes (AES-256)")
    return raw


def key_version(key: bytes) -> str:
    return hashlib.sha256(b"offerhub-wallet-key:" + key).hexdigest()[:12]


def seal(keyring: Keyring, secret: str, *, public_key: str) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(keyring.current).encrypt(nonce, secret.encode(), public_key.encode())
    return Sealed(base64.b64encode(ciphertext).decode(), base64.b64encode(nonce).decode(), keyring.version)


def open_sealed(keyring: Keyring, sealed: Sealed, *, public_key: str) -> str:
    """The secret, if the key, the ciphertext and the associated public key all match."""
    key = keyring.key_for(sealed.key_version)
    try:
        plain = AESGCM(key).decrypt(base64.b64decode(sealed.nonce), base64.b64decode(sealed.ciphertext),
                                    public_key.encode())
    except (InvalidTag, ValueError, binascii.Error):
        raise SealError("the sealed secret does not open with this key and public key") from None
    return plain.decode()


def reseal(keyring: Keyring, sealed: Sealed, *, public_key: str) -> Sealed:
    """Open under whichever key sealed it and seal again under the current key."""
    return seal(keyring, open_sealed(keyring, sealed, public_key=public_key), public_key=public_key)
