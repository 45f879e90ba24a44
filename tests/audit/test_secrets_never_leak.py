"""No wallet secret, API key or token ever reaches a log line or a stored record; no e-mail reaches a log line.

The module drives its own flows first (``tests/audit/flows.py``): wallets whose secrets sign their trustlines,
an escrow's funding and a withdrawal; an API key created (its answer stored under an idempotency key) and
used, with a token minted from it; users with e-mails, one linked to AirTM by e-mail. Then it reads every log
line captured so far (in-process, and the files of the product's subprocesses) and every table of the
schema, and looks for those secrets, and for every wallet's secret of the run: alone it proves the rules on
its own flows, and in a full run it also covers everything before it, wherever it is in the order (issue 18).
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from orchestrator.settings import Settings
from tests.audit.flows import Flows
from tests.audit.scans import every_table, secrets_of_every_wallet, seeds_in, table_text
from tests.fixtures.logs import subprocess_logs

#: Tables a secret could most easily be copied into by mistake: each must be among those scanned.
LIKELY = {"commands", "outbox", "audit_log", "idempotency_keys", "chain_steps", "deposits", "journal_transactions",
          "api_keys", "users", "cursors", "reconciliation_reports", "withdrawals", "wallets"}


@pytest.fixture(scope="module")
def found(flows: Flows, engine: Engine, captured_logs: list[str]) -> dict[str, str]:
    """Once the flows ran: every log line of the run so far and every table of the schema, each as one text."""
    haystacks = {"in-process logs": "\n".join(captured_logs), "subprocess logs": "\n".join(subprocess_logs())}
    tables = every_table(engine)
    assert set(tables) >= LIKELY
    haystacks.update((table, table_text(engine, table)) for table in tables)
    return haystacks


def signed_steps(engine: Engine, public_key: str) -> set[str]:
    """The kinds of the confirmed chain steps a wallet signed (its secret was opened to sign them)."""
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT kind FROM chain_steps WHERE :pk = ANY(signers) AND status = 'CONFIRMED' "
            "AND signed_xdr IS NOT NULL"), {"pk": public_key}).scalars())


def test_no_wallet_secret_appears_in_any_log_line_or_stored_record(
        flows: Flows, found: dict[str, str], engine: Engine, settings: Settings) -> None:
    ours = flows.secrets(settings)
    secrets = secrets_of_every_wallet(engine, settings)
    assert set(ours.values()) <= set(secrets)
    assert all(s.startswith("S") and len(s) == 56 for s in secrets)
    # the flows' wallets signed with their secrets: the buyer its trustline and the escrow's funding, the seller
    # its trustline and the withdrawal's payment
    assert signed_steps(engine, flows.wallets["buyer"]["public_key"]) >= {"add_trustline", "tw_fund"}
    assert signed_steps(engine, flows.wallets["seller"]["public_key"]) >= {"add_trustline", "withdrawal_payment"}
    # where the flows left their traces, so a secret copied along with them would be there
    assert flows.order_id in found["in-process logs"]
    assert found["subprocess logs"]  # the module's monitor process logs at INFO
    assert flows.deposit_hash in found["deposits"]
    assert flows.withdrawal_id in found["chain_steps"]
    assert flows.escrow_id in found["chain_steps"]
    assert flows.withdrawal_id in found["commands"]
    # the flows' wallets' secrets, then every wallet's of the run
    assert [(where, who) for who, secret in ours.items() for where, text_ in found.items() if secret in text_] == []
    every = set(secrets)
    assert [(where, s[:4]) for where, text_ in found.items() for s in seeds_in(text_) & every] == []
    # the encryption key itself never appears either
    assert [where for where, text_ in found.items() if settings.wallet_encryption_key in text_] == []


def test_no_api_key_or_token_is_stored_or_logged_and_no_email_is_logged(
        flows: Flows, found: dict[str, str], engine: Engine) -> None:
    # the key was created with an idempotency key (its answer is stored, the plaintext masked) and then used
    assert flows.key_id in found["idempotency_keys"]
    assert flows.key_id in found["api_keys"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT last_used_at FROM api_keys WHERE id = :k"),
                            {"k": flows.key_id}).scalar() is not None
    # every request after the key's creation carried it, and its logs were captured
    assert flows.order_id in found["in-process logs"]
    credentials = {"key": flows.key, "token": flows.token}
    assert [(where, name) for name, value in credentials.items() for where, text_ in found.items()
            if value in text_] == []
    # the e-mails the flows sent are kept where they belong (users), never in a log line
    assert [who for who, email in flows.emails.items() if email not in found["users"]] == []
    logs = ("in-process logs", "subprocess logs")
    assert [(where, who) for who, email in flows.emails.items() for where in logs if email in found[where]] == []
