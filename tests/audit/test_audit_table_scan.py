"""One audit entry per event, an intact chain, and nothing secret in the audit table (api.md §15, issue 10).

The module drives its own flows first (``tests/audit/flows.py``: users with e-mails and wallets, a deposit,
an order escrowed and released, an API key and a token, an administrative credit, a withdrawal, an AirTM
link), then scans the whole ``outbox`` and ``audit_log``: run alone it proves each rule on those flows, and in a
full run it also covers every flow that ran before it, wherever it is in the order (issue 18).
"""

from __future__ import annotations

import re
import time
from collections import Counter

from sqlalchemy import Engine, text

from orchestrator import audit
from orchestrator.db import session
from orchestrator.outbox import relay
from orchestrator.settings import Settings
from tests.audit.flows import Flows
from tests.audit.scans import secrets_of_every_wallet, seeds_in
from tests.e2e.test_audit_trail import events_and_entries

#: A full e-mail address: an address whose local part is not the redacted ``x***`` form.
FULL_EMAIL = re.compile(r"[A-Za-z0-9._%+-]*[A-Za-z0-9._%+-]{2}@[A-Za-z0-9-]+\.[A-Za-z]")
API_KEY = re.compile(r"ohk_(?:test|live|tok)_[A-Za-z0-9]")
#: Events the flows must have emitted (so the per-flow comparison below compares something).
FLOW_EVENTS = {"user.created", "wallet.created", "wallet.activated", "balance.credited", "order.created",
               "escrow.funded", "escrow.released", "order.closed", "balance.debited", "withdrawal.completed",
               "user.airtm_linked"}


def redacted(email: str) -> str:
    """An e-mail as the audit table keeps it (``orchestrator.audit.redact``): first character and domain."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}"


def test_every_event_is_exactly_one_audit_entry(flows: Flows, engine: Engine) -> None:
    # the flows': each event has one entry with its type, aggregate, user, correlation and actor type
    events, entries = events_and_entries(engine, flows.aggregates)
    assert {event[0] for event in events} >= FLOW_EVENTS
    assert entries == events
    # the whole table's: every flow of the run so far, this module's included
    with engine.connect() as conn:
        every_event = Counter(map(tuple, conn.execute(text(
            "SELECT event_type, aggregate_id, aggregate_type FROM outbox")).all()))
        every_entry = Counter(map(tuple, conn.execute(text(
            "SELECT action, resource_id, resource_type FROM audit_log "
            "WHERE action IN (SELECT DISTINCT event_type FROM outbox)")).all()))
    assert every_entry == every_event


def test_each_administrative_act_of_the_flows_is_exactly_one_audit_entry(flows: Flows, engine: Engine) -> None:
    """Acts that emit no event of their own are audited too, once, with who did them."""
    with engine.connect() as conn:
        acts = conn.execute(text(
            "SELECT action, resource_id, actor_id, id FROM audit_log WHERE resource_id = ANY(:r) "
            "AND action IN ('api_key.created', 'api_key.token_minted', 'balance.credit')"),
            {"r": [flows.key_id, flows.buyer["id"]]}).all()
    assert Counter((action, resource, actor) for action, resource, actor, _ in acts) == {
        ("api_key.created", flows.key_id, "master"): 1,
        ("api_key.token_minted", flows.key_id, flows.key_id): 1,
        ("balance.credit", flows.buyer["id"], flows.key_id): 1}
    assert next(id_ for action, *_, id_ in acts if action == "balance.credit") == flows.credit_audit_id


def test_the_chain_verifies_and_holds_every_entry_of_the_flows(flows: Flows, engine: Engine) -> None:
    # an entry committed by background work between the relay's pass and the walk is chained by the next pass
    deadline = time.monotonic() + 15
    while True:
        relay.relay(engine)
        with engine.connect() as conn:  # one snapshot, as `offerhub audit verify` walks it
            conn.exec_driver_sql(session.SNAPSHOT)
            found = audit.verify(conn)
        if not found.ok or found.unchained == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert found.ok, found.problem
    assert found.unchained == 0
    with engine.connect() as conn:
        positions = list(conn.execute(text(
            "SELECT position FROM audit_log WHERE resource_id = ANY(:r) OR user_id = ANY(:u)"),
            {"r": [*flows.aggregates, flows.key_id], "u": flows.users}).scalars())
    events, _ = events_and_entries(engine, flows.aggregates)
    assert len(positions) >= sum(events.values()) + 3  # an entry per event of the flows, and their three acts
    assert None not in positions
    assert len(set(positions)) == len(positions)
    assert max(positions) <= found.checked  # inside the stretch the walk checked


def test_no_secret_api_key_wallet_secret_or_full_email_is_in_the_audit_table(
        flows: Flows, engine: Engine, settings: Settings) -> None:
    with engine.connect() as conn:
        table = "\n".join(conn.execute(text("SELECT a::text FROM audit_log a")).scalars())
        ours = "\n".join(conn.execute(text(
            "SELECT a::text FROM audit_log a WHERE resource_id = ANY(:r) OR user_id = ANY(:u)"),
            {"r": [*flows.aggregates, flows.key_id], "u": flows.users}).scalars())
        emails = list(conn.execute(text("SELECT email FROM users WHERE email IS NOT NULL "
                                        "UNION SELECT airtm_email FROM users WHERE airtm_email IS NOT NULL"))
                      .scalars())
        salts = list(conn.execute(text("SELECT salt FROM api_keys UNION SELECT key_hash FROM api_keys")).scalars())
        our_key = conn.execute(text("SELECT salt, key_hash FROM api_keys WHERE id = :k"),
                               {"k": flows.key_id}).one()
    wallet_secrets = secrets_of_every_wallet(engine, settings)
    our_secrets = flows.secrets(settings)
    # the flows' records are in the table: each user's e-mail kept redacted (the buyer's twice: its user.created
    # entry and the note of the administrative credit), the key's creation and its token by the key's id
    assert ours.count(redacted(flows.emails["buyer"])) >= 2
    assert redacted(flows.emails["seller"]) in ours
    assert redacted(flows.emails["linked"]) in ours
    assert flows.key_id in ours
    # ... and none of their secrets: full e-mails, the key's plaintext, token, salt or hash, the wallets' seeds
    assert [who for who, email in flows.emails.items() if email in table] == []
    assert [name for name, value in (("key", flows.key), ("token", flows.token), ("salt", our_key.salt),
                                     ("hash", our_key.key_hash)) if value in table] == []
    assert set(our_secrets.values()) <= set(wallet_secrets)  # the scan below looks for the flows' wallets too
    assert [who for who, secret in our_secrets.items() if secret in table] == []
    # the whole table: every user's e-mails, every key's salt and hash, every wallet's seed, anything shaped
    # like a full e-mail or one of our credentials, and the instance's own keys
    assert [s[:4] for s in seeds_in(table) & set(wallet_secrets)] == []
    assert [e for e in emails if e in table] == []
    assert FULL_EMAIL.findall(table) == []
    assert API_KEY.findall(table) == []
    assert [s[:4] for s in salts if s in table] == []
    assert settings.master_key not in table
    assert settings.wallet_encryption_key not in table
