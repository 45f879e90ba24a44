"""No wallet secret ever reaches a log line, a stored response, an event, a command or a step record.

This module runs last (``zz_``) on purpose: it reads every log line the run produced (in-process and
the product's subprocesses) and every table the run filled, then looks for each wallet's secret.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

from orchestrator import crypto
from orchestrator.settings import Settings
from tests.fixtures.logs import subprocess_logs

#: Every table a secret could be copied into by mistake, as text.
TABLES = ("commands", "outbox", "audit_log", "idempotency_keys", "chain_steps", "deposits", "journal_transactions",
          "api_keys", "users", "cursors", "reconciliation_reports")


def secrets_of_every_wallet(engine: Engine, settings: Settings) -> list[str]:
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT public_key, sealed_secret, nonce, key_version FROM wallets")).all()
    return [crypto.open_sealed(keyring, crypto.Sealed(c, n, v), public_key=pk) for pk, c, n, v in rows]


def test_no_wallet_secret_appears_in_any_log_line_or_stored_record(
        engine: Engine, settings: Settings, captured_logs: list[str], worker: object) -> None:
    secrets = secrets_of_every_wallet(engine, settings)
    assert secrets, "the run created wallets, so there are secrets to look for"
    assert all(s.startswith("S") and len(s) == 56 for s in secrets)
    haystacks = {"in-process logs": "\n".join(captured_logs), "subprocess logs": "\n".join(subprocess_logs())}
    with engine.connect() as conn:
        for table in TABLES:
            haystacks[table] = "\n".join(conn.execute(text(f"SELECT t::text FROM {table} t")).scalars())
    assert haystacks["in-process logs"], "logs were captured"
    leaks = [(where, secret[:4]) for secret in secrets for where, text_ in haystacks.items() if secret in text_]
    assert leaks == []
    # the encryption key itself never appears either
    assert not any(settings.wallet_encryption_key in text_ for text_ in haystacks.values())
