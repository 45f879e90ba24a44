"""Sealing wallet secrets: only the right key, nonce, ciphertext and public key open a secret."""

from __future__ import annotations

import base64
import dataclasses
import secrets

import pytest
from stellar_sdk import Keypair

from orchestrator.crypto import Keyring, Sealed, SealError, decode_key, key_version, open_sealed, reseal, seal


def new_key() -> bytes:
    return secrets.token_bytes(32)


def flip_first_byte(text: str) -> str:
    """The same base64 value with its first byte changed (a one-bit tamper)."""
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def opens_for(keyring: Keyring, sealed: Sealed, wallet: Keypair) -> bool:
    """Whether the sealed secret opens to the wallet's own secret.

    Callers assert on the returned bool (never on the secret or the keyring, whose repr holds the key),
    so a failing test cannot print a secret or a key.
    """
    return Keypair.from_secret(open_sealed(keyring, sealed, public_key=wallet.public_key)).public_key \
        == wallet.public_key


@pytest.fixture
def wallet() -> Keypair:
    return Keypair.random()


def test_a_sealed_secret_opens_to_the_same_secret(wallet: Keypair) -> None:
    keyring = Keyring(new_key())
    sealed = seal(keyring, wallet.secret, public_key=wallet.public_key)
    opened = opens_for(keyring, sealed, wallet)
    assert opened


def test_a_tampered_ciphertext_does_not_open(wallet: Keypair) -> None:
    keyring = Keyring(new_key())
    sealed = seal(keyring, wallet.secret, public_key=wallet.public_key)
    with pytest.raises(SealError):
        open_sealed(keyring, dataclasses.replace(sealed, ciphertext=flip_first_byte(sealed.ciphertext)),
                    public_key=wallet.public_key)


def test_a_tampered_nonce_does_not_open(wallet: Keypair) -> None:
    keyring = Keyring(new_key())
    sealed = seal(keyring, wallet.secret, public_key=wallet.public_key)
    with pytest.raises(SealError):
        open_sealed(keyring, dataclasses.replace(sealed, nonce=flip_first_byte(sealed.nonce)),
                    public_key=wallet.public_key)


def test_another_key_does_not_open_even_when_it_claims_the_same_version(wallet: Keypair) -> None:
    sealed = seal(Keyring(new_key()), wallet.secret, public_key=wallet.public_key)
    other = Keyring(new_key())
    with pytest.raises(SealError):
        open_sealed(other, sealed, public_key=wallet.public_key)
    # a forged version label only selects the wrong key; AES-GCM's tag still refuses it
    with pytest.raises(SealError):
        open_sealed(other, dataclasses.replace(sealed, key_version=other.version), public_key=wallet.public_key)


def test_a_secret_sealed_for_one_wallet_does_not_open_as_another_wallets(wallet: Keypair) -> None:
    keyring = Keyring(new_key())
    sealed = seal(keyring, wallet.secret, public_key=wallet.public_key)
    with pytest.raises(SealError):
        open_sealed(keyring, sealed, public_key=Keypair.random().public_key)


def test_every_seal_uses_a_fresh_nonce(wallet: Keypair) -> None:
    keyring = Keyring(new_key())
    first = seal(keyring, wallet.secret, public_key=wallet.public_key)
    second = seal(keyring, wallet.secret, public_key=wallet.public_key)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext
    assert len(base64.b64decode(first.nonce)) == 12  # 96 bits, as AES-GCM wants


@pytest.mark.parametrize("encode", [lambda raw: base64.b64encode(raw).decode(), bytes.hex], ids=["base64", "hex"])
def test_a_key_given_as_base64_or_hex_seals_and_opens(wallet: Keypair, encode) -> None:
    raw = new_key()
    keyring = Keyring.from_settings(encode(raw))
    decoded = keyring.current == raw
    assert decoded
    sealed = seal(keyring, wallet.secret, public_key=wallet.public_key)
    opened = opens_for(Keyring(raw), sealed, wallet)
    assert opened


@pytest.mark.parametrize("text", [base64.b64encode(b"k" * 16).decode(), base64.b64encode(b"k" * 31).decode(),
                                  base64.b64encode(b"k" * 33).decode(), "ab" * 31, "ab" * 33, "zz" * 32,
                                  "not a key"],
                         ids=["16 bytes", "31 bytes", "33 bytes", "hex 31", "hex 33", "bad hex", "garbage"])
def test_a_key_of_another_length_or_encoding_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="32 bytes") as raised:
        decode_key(text)
    repeated = text in str(raised.value)
    assert not repeated  # the refusal never repeats the key


def test_a_missing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="WALLET_ENCRYPTION_KEY"):
        Keyring.from_settings(None)


def test_the_previous_key_opens_its_secrets_only_while_the_keyring_holds_it(wallet: Keypair) -> None:
    old, new = new_key(), new_key()
    sealed = seal(Keyring(old), wallet.secret, public_key=wallet.public_key)
    opened_while_rotating = opens_for(Keyring(new, previous=old), sealed, wallet)
    assert opened_while_rotating
    with pytest.raises(SealError):
        open_sealed(Keyring(new), sealed, public_key=wallet.public_key)


def test_resealing_moves_a_secret_to_the_current_key(wallet: Keypair) -> None:
    old, new = new_key(), new_key()
    sealed = seal(Keyring(old), wallet.secret, public_key=wallet.public_key)
    moved: Sealed = reseal(Keyring(new, previous=old), sealed, public_key=wallet.public_key)
    new_version = Keyring(new).version
    assert moved.key_version == new_version != sealed.key_version
    opened_under_new_key_alone = opens_for(Keyring(new), moved, wallet)
    assert opened_under_new_key_alone


def test_a_keyring_printed_anywhere_shows_key_versions_never_keys() -> None:
    current, previous = secrets.token_bytes(32), secrets.token_bytes(32)
    keyring = Keyring(current, previous)
    shown = repr(keyring) + str(keyring) + f"{keyring!r}"
    assert current.hex() not in shown
    assert repr(current) not in shown
    assert repr(previous) not in shown
    assert key_version(current) in shown
