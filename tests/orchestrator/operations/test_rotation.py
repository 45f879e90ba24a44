"""Key rotation re-seals every wallet secret under the new key, in batches, and can be run again.

A rotation rewrites every wallet in its database, so these tests get a database of their own: the
run's shared one holds wallets the in-process worker must keep opening under the run's key.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

from orchestrator import chain_steps, crypto
from orchestrator.db import create_sync_engine
from orchestrator.operations import rotation
from orchestrator.settings import Settings
from tests import builders
from tests.fixtures.database import own_database
from tests.fixtures.processes import ROOT


@dataclass(frozen=True)
class Isolated:
    engine: Engine
    settings: Settings  # the run's settings pointed at this database


@pytest.fixture(scope="module")
def isolated(settings: Settings) -> Iterator[Isolated]:
    with own_database(f"{settings.database_url}_rotation") as url:
        engine = create_sync_engine(url, pool_size=2)
        yield Isolated(engine, dataclasses.replace(settings, database_url=url))
        engine.dispose()


@pytest.fixture
def db(isolated: Isolated) -> Isolated:
    """The isolated database, emptied of wallets, so counts are exact."""
    with isolated.engine.begin() as conn:
        conn.execute(text("DELETE FROM wallets"))
    return isolated


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def sealed_rows(engine: Engine) -> dict[str, tuple[str, str, str, str]]:
    """wallet id -> (public key, ciphertext, nonce, key version)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, public_key, sealed_secret, nonce, key_version FROM wallets")).all()
    return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}


def signers_that_open(engine: Engine, keyring: crypto.Keyring) -> set[str]:
    """Public keys whose secret the signing path opens with ``keyring`` (and that match their wallet).

    Only public keys leave this function, so no assertion on it can print a secret.
    """
    opened = set()
    with engine.connect() as conn:
        for public_key, *_ in sealed_rows(engine).values():
            try:
                keypair = chain_steps.signing_keypair(conn, keyring, public_key)
            except crypto.SealError:
                continue
            if keypair.public_key == public_key:
                opened.add(public_key)
    return opened


def test_rotation_reseals_every_secret_under_the_new_key_and_running_it_again_changes_nothing(
        db: Isolated) -> None:
    # Given five wallets created by the product under the current key
    old, new = db.settings.wallet_encryption_key, new_key()
    for _ in range(5):
        builders.user(db.engine, settings=db.settings)
    before = sealed_rows(db.engine)
    public_keys = {row[0] for row in before.values()}
    assert len(before) == 5
    # When the operator rotates to a new key, two wallets per transaction
    rotated = dataclasses.replace(db.settings, wallet_encryption_key=new, wallet_encryption_key_previous=old)
    keyring = crypto.Keyring.from_settings(rotated.wallet_encryption_key, rotated.wallet_encryption_key_previous)
    result = rotation.rotate(db.engine, keyring, batch_size=2)
    # Then every secret was re-sealed, and opens under the new key alone, and no longer under the old
    assert (result.resealed, result.current, result.unopened) == (5, 0, [])
    after = sealed_rows(db.engine)
    assert {row[3] for row in after.values()} == {crypto.key_version(crypto.decode_key(new))}
    assert all(after[w][1:3] != before[w][1:3] for w in before)
    assert signers_that_open(db.engine, crypto.Keyring.from_settings(new)) == public_keys
    assert signers_that_open(db.engine, crypto.Keyring.from_settings(old)) == set()
    # And running it again re-seals nothing and leaves every row as it was
    again = rotation.rotate(db.engine, keyring, batch_size=2)
    assert (again.resealed, again.current, again.unopened) == (0, 5, [])
    assert sealed_rows(db.engine) == after


def test_wallets_created_under_the_new_key_during_a_rotation_count_as_current(db: Isolated) -> None:
    # Given two wallets sealed under the old key, then a restart with the new key and a wallet created after it
    old, new = db.settings.wallet_encryption_key, new_key()
    for _ in range(2):
        builders.user(db.engine, settings=db.settings)
    rotated = dataclasses.replace(db.settings, wallet_encryption_key=new, wallet_encryption_key_previous=old)
    builders.user(db.engine, settings=rotated)
    # Then signing opens all three while both keys are configured
    both = crypto.Keyring.from_settings(new, old)
    assert len(signers_that_open(db.engine, both)) == 3
    # When the rotation runs, only the two old secrets are re-sealed
    result = rotation.rotate(db.engine, both)
    assert (result.resealed, result.current, result.unopened) == (2, 1, [])
    assert len(signers_that_open(db.engine, crypto.Keyring.from_settings(new))) == 3


def test_a_secret_no_configured_key_opens_is_named_and_left_untouched(db: Isolated) -> None:
    # Given a wallet sealed under a key the operator forgot to keep as the previous key
    builders.user(db.engine, settings=db.settings)
    before = sealed_rows(db.engine)
    # When the rotation runs with the new key alone
    result = rotation.rotate(db.engine, crypto.Keyring.from_settings(new_key()))
    # Then it names the wallet, re-seals nothing, and the secret still opens under its own key
    assert (result.resealed, result.current, result.unopened) == (0, 0, list(before))
    assert sealed_rows(db.engine) == before
    assert len(signers_that_open(db.engine, crypto.Keyring.from_settings(db.settings.wallet_encryption_key))) == 1


def test_the_rotate_key_command_reports_its_counts_and_never_prints_a_key_or_secret(db: Isolated) -> None:
    # Given three wallets under the old key
    old, new = db.settings.wallet_encryption_key, new_key()
    for _ in range(3):
        builders.user(db.engine, settings=db.settings)
    env = {**os.environ, "DATABASE_URL": db.settings.database_url, "WALLET_ENCRYPTION_KEY": new,
           "WALLET_ENCRYPTION_KEY_PREVIOUS": old, "LOG_LEVEL": "DEBUG"}
    # When the operator runs the command twice
    first = subprocess.run([sys.executable, "-m", "orchestrator", "wallets", "rotate-key", "--batch-size", "2"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    second = subprocess.run([sys.executable, "-m", "orchestrator", "wallets", "rotate-key"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    # Then it re-sealed three, then found three current, and exited 0 both times
    assert (first.returncode, second.returncode) == (0, 0), (first.stderr[-2000:], second.stderr[-2000:])
    assert "Re-sealed 3 wallet secret(s)" in first.stdout
    assert "0 already current" in first.stdout
    assert "Re-sealed 0 wallet secret(s)" in second.stdout
    assert "3 already current" in second.stdout
    # And neither key, in any encoding, nor any secret appears in what it printed or logged
    printed = first.stdout + first.stderr + second.stdout + second.stderr
    raws = [crypto.decode_key(old), crypto.decode_key(new)]
    leaked_key = any(form in printed for raw in raws for form in (base64.b64encode(raw).decode(), raw.hex()))
    leaked_secret = "S" in {word[:1] for word in printed.split() if len(word) == 56}
    assert not leaked_key
    assert not leaked_secret
    assert signers_that_open(db.engine, crypto.Keyring.from_settings(new)) == {
        row[0] for row in sealed_rows(db.engine).values()}


def test_the_wallets_command_needs_an_action() -> None:
    done = subprocess.run([sys.executable, "-m", "orchestrator", "wallets"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "rotate-key" in done.stderr
