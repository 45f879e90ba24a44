"""What the audit scans read: every wallet's secret, every table of the schema and every log line of the run."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from orchestrator import crypto
from orchestrator.settings import Settings

#: A Stellar secret seed at any position, overlapping ones included (so one preceded by an ``S`` is not missed).
_SEEDS = re.compile(r"(?=(S[A-Z2-7]{55}))")


def secrets_of_every_wallet(engine: Engine, settings: Settings) -> list[str]:
    """Every wallet's secret seed, opened from its sealed row (the run's, whoever created it)."""
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT public_key, sealed_secret, nonce, key_version FROM wallets")).all()
    return [crypto.open_sealed(keyring, crypto.Sealed(c, n, v), public_key=pk) for pk, c, n, v in rows]


def seeds_in(haystack: str) -> set[str]:
    """Every substring of ``haystack`` shaped like a secret seed: one pass, whatever the number of wallets."""
    return set(_SEEDS.findall(haystack))


def every_table(engine: Engine) -> list[str]:
    """Every table of the run's schema: a table added later is scanned without anyone listing it here."""
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")).scalars())


def table_text(engine: Engine, table: str) -> str:
    """Every row of ``table`` as text, one a line."""
    with engine.connect() as conn:
        return "\n".join(conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars())
