"""`SANDBOX_LEDGER_MODE=interval`: ledgers close on a timer and synchronous submits wait for the close."""

from __future__ import annotations

import time

import pytest
from stellar_sdk import Keypair, Server

from tests.fixtures.sandbox import SandboxControl, start_sandbox
from tests.sandbox.helpers import balances, submit, usdc


def test_interval_mode_submit_waits_for_the_ledger_close() -> None:
    with start_sandbox(SANDBOX_LEDGER_MODE="interval", SANDBOX_LEDGER_INTERVAL_SECONDS="0.4") as url:
        sandbox = SandboxControl(url)
        server = Server(sandbox.horizon_url)
        alice = Keypair.from_secret(sandbox.create_account(usdc="10")["secret"])
        bob = sandbox.create_account()["publicKey"]
        started = time.monotonic()
        reply = submit(server, alice, lambda b: b.append_payment_op(bob, usdc(sandbox), "4"))
        waited = time.monotonic() - started
        assert reply["successful"]
        assert 0 < waited <= 1.5
        assert balances(server, bob)["USDC"] == "4.0000000"
        ledger = server.ledgers().order(desc=True).limit(1).call()["_embedded"]["records"][0]
        assert ledger["sequence"] >= reply["ledger"]
        assert sandbox.conservation()["balanced"]


def test_the_ledger_mode_switches_at_run_time_and_pending_transactions_apply_on_the_way_back(
        sandbox: SandboxControl) -> None:
    server = Server(sandbox.horizon_url)
    alice = Keypair.from_secret(sandbox.create_account(usdc="10")["secret"])
    bob = sandbox.create_account()["publicKey"]
    assert sandbox.set_ledger_mode("interval", 0.3) == {"mode": "interval", "intervalSeconds": 0.3}
    try:
        started = time.monotonic()
        assert submit(server, alice, lambda b: b.append_payment_op(bob, usdc(sandbox), "1"))["successful"]
        assert 0 < time.monotonic() - started <= 1.5
    finally:
        sandbox.set_ledger_mode("instant")
    started = time.monotonic()
    assert submit(server, alice, lambda b: b.append_payment_op(bob, usdc(sandbox), "2"))["successful"]
    assert time.monotonic() - started < 0.3
    assert balances(server, bob)["USDC"] == "3.0000000"
    with pytest.raises(AssertionError):
        sandbox.set_ledger_mode("sometimes")
