"""A short chaos run (about two minutes of lifecycles under kills and faults, crypto and AirTM lanes on one
instance, switched to the other provider and back mid-run) must end with every invariant holding, and its
checker must fire when an invariant is broken on purpose.

The run is ``scripts/chaos.py``'s (``scripts.chaos.__main__``), in-process, with its own private Redis, RabbitMQ node,
PostgreSQL proxy, database, sandbox and Procfile processes (nothing of this test session's own
world is used). ``after`` is called while the run's system is still up: there the test corrupts
the run's database and the sandbox-side facts, re-runs the same check function, and expects the
violations to be reported.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
import requests

from scripts.chaos import __main__ as chaos

# The driving phase is bounded (--duration) and so is the wait for quiescence (--quiet-timeout); the test's
# own limit covers both with room for the start-up of the private RabbitMQ node and the two instances.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(720)]

ARGS = ["--lifecycles", "28", "--duration", "60", "--lanes", "4", "--listeners", "2", "--fault-interval", "3",
        "--seed", "20261201", "--step-timeout", "180", "--quiet-timeout", "300"]


def figure(report: Any, starts: str) -> Any:
    return next(f for f in report.figures if f.name.startswith(starts))


def test_a_short_chaos_run_keeps_every_invariant_and_its_checker_fires_on_a_broken_one(
        capsys: pytest.CaptureFixture[str]) -> None:
    broken: dict[str, Any] = {}

    def corrupt_then_recheck(outcome: chaos.Outcome) -> None:
        # Given a run whose checks passed: move one seller's balance without the journal
        seller = outcome.facts.lanes[0].seller
        with psycopg.connect(outcome.rig.direct_database_url, autocommit=True) as conn:
            conn.execute("UPDATE balances SET available = available + 1 WHERE user_id = %s", (seller,))
        # and let one listener have seen an event twice
        listener = outcome.listeners[0]
        listener.seen[next(iter(listener.seen))] += 1
        # and let the first webhook endpoint's receiver have lost an event it was owed
        assert outcome.receiver is not None
        owed = outcome.receiver.owed(outcome.rig.direct_database_url)["all"]
        outcome.receiver.hooks["all"].received.discard(next(iter(owed)))
        # and let USDC reach a treasury account without the book, and the AirTM enterprise gain a dollar
        sandbox = outcome.rig.sandbox_url
        with psycopg.connect(outcome.rig.direct_database_url, autocommit=True) as conn:
            row = conn.execute("SELECT public_key FROM wallets WHERE purpose = 'TREASURY' LIMIT 1").fetchone()
        assert row is not None
        requests.post(f"{sandbox}/_sandbox/stellar/pay", timeout=30, json={
            "from": "issuer", "to": row[0], "amount": "1", "asset": "USDC"}).raise_for_status()
        enterprise = requests.get(f"{sandbox}/_sandbox/airtm/config", timeout=30).json()["enterpriseBalance"]
        requests.post(f"{sandbox}/_sandbox/airtm/config", timeout=30,
                      json={"enterpriseBalance": float(enterprise) + 1}).raise_for_status()
        broken["report"] = outcome.recheck()

    code = chaos.run(ARGS, after=corrupt_then_recheck)
    printed = capsys.readouterr().out

    assert code == 0, printed
    assert "violations: 0" in printed
    kills = int(re.search(r"kills survived: (\d+)", printed).group(1))
    assert kills > 0, printed
    done = re.search(r"lifecycles driven in \d+ s, (\d+) completed", printed)
    assert done is not None, printed
    assert int(done.group(1)) >= 10, printed  # about 20 on a busy 2-core machine
    for name in ("orders neither terminal nor in a waiting state", "pending commands after quiescence",
                 "open chain steps after quiescence", "journal transactions that do not balance",
                 "balances where projection != journal", "wallets whose book != ledger USDC",
                 "deposits paid on the ledger / credited exactly once", "ledger transactions confirmed for two",
                 "book entries made twice", "webhooks all: events delivered / expected",
                 "webhooks orders: events delivered / expected", "switch 1 to crypto", "switch 2 to airtm",
                 "treasury pool: ledger - journal = recorded float", "AirTM enterprise: operator funds",
                 "AirTM top-ups made / confirmed", "AirTM withdrawals made / completed", "offerhub reconcile",
                 "orders escrowed and closed, by funding"):
        assert re.search(rf"{re.escape(name)}.* ok$", printed, re.MULTILINE), (name, printed)

    report = broken["report"]
    assert not report.ok
    assert not figure(report, "balances where projection != journal").ok
    assert not figure(report, "wallets whose book != ledger USDC").ok
    assert not figure(report, "SSE listener 0").ok
    assert figure(report, "SSE listener 1").ok
    assert figure(report, "journal transactions that do not balance").ok
    assert not figure(report, "webhooks all").ok
    assert figure(report, "webhooks orders").ok
    assert not figure(report, "treasury pool: ledger - journal = recorded float").ok
    assert not figure(report, "AirTM enterprise: operator funds = recorded").ok
