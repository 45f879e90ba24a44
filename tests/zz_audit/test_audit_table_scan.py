"""After every flow of the run: one audit entry per event, an intact chain, and nothing secret in the table.

Runs last (``zz_``) on purpose: it scans what every other test wrote (api.md §15, issue 10).
"""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import Engine, text

from orchestrator import audit
from orchestrator.outbox import relay
from orchestrator.settings import Settings
from tests.zz_audit.test_secrets_never_leak import secrets_of_every_wallet

#: A full e-mail address: an address whose local part is not the redacted ``x***`` form.
FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9._%+-]{2}@[A-Za-z0-9-]+\.[A-Za-z]")
API_KEY = re.compile(r"ohk_(?:test|live|tok)_[A-Za-z0-9]")


def test_every_event_of_the_run_is_exactly_one_audit_entry(engine: Engine) -> None:
    with engine.connect() as conn:
        events = Counter(map(tuple, conn.execute(text(
            "SELECT event_type, aggregate_id, aggregate_type FROM outbox")).all()))
        entries = Counter(map(tuple, conn.execute(text(
            "SELECT action, resource_id, resource_type FROM audit_log "
            "WHERE action IN (SELECT DISTINCT event_type FROM outbox)")).all()))
    assert events
    assert entries == events


def test_the_chain_of_the_whole_run_verifies(engine: Engine) -> None:
    relay.relay(engine)
    with engine.connect() as conn:
        found = audit.verify(conn)
    assert found.ok, found.problem
    assert found.unchained == 0


def test_no_secret_api_key_wallet_secret_or_full_email_is_in_the_audit_table(
        engine: Engine, settings: Settings, worker: object) -> None:
    with engine.connect() as conn:
        table = "\n".join(conn.execute(text("SELECT a::text FROM audit_log a")).scalars())
        emails = list(conn.execute(text("SELECT email FROM users WHERE email IS NOT NULL "
                                               "UNION SELECT airtm_email FROM users WHERE airtm_email IS NOT NULL"))
                  .scalars())
        salts = list(conn.execute(text("SELECT salt FROM api_keys UNION SELECT key_hash FROM api_keys")).scalars())
    assert table
    assert [s[:4] for s in secrets_of_every_wallet(engine, settings) if s in table] == []
    assert [e for e in emails if e in table] == []
    assert FULL_EMAIL.findall(table) == []
    assert API_KEY.findall(table) == []
    assert [s[:4] for s in salts if s in table] == []
    assert settings.master_key not in table
    assert settings.wallet_encryption_key not in table
