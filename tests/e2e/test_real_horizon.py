"""The monitor against Horizon as its source says it behaves (issue 14, DESIGN decisions 23 and 35).

Horizon never answers 410 to an ascending cursor, prunes history under a running monitor, is reset with
the network (testnet), rate-limits per IP, and lists contract transfers among the payments. Each test ends
with every deposit credited exactly once.

The network-reset test runs on a sandbox of its own (a reset of the run's sandbox would wipe the ledger the
later tests build on); the wallets it pays are the product's own, their accounts opened on that chain with
their own keys, as a user re-activating a wallet would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from sqlalchemy import Engine, text
from stellar_sdk import Asset, Keypair, Server, TransactionBuilder

from orchestrator import crypto
from orchestrator.operations import check
from orchestrator.providers.horizon_stream import PaymentStream
from orchestrator.settings import Settings
from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_monitor_crash import credits, wait_credits
from tests.fixtures import processes
from tests.fixtures.processes import following
from tests.fixtures.sandbox import PASSPHRASE, SandboxControl, start_sandbox

pytestmark = pytest.mark.slow


def sources(engine: Engine, user_id: str) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT DISTINCT source FROM deposits WHERE user_id = :u"),
                                   {"u": user_id}).scalars())


def open_account(sandbox: SandboxControl, secret: str) -> None:
    """Fund the account on the sandbox's chain and add the USDC trustline, signed with its own key."""
    keypair = Keypair.from_secret(secret)
    requests.get(sandbox.friendbot_url, params={"addr": keypair.public_key}, timeout=10).raise_for_status()
    server = Server(sandbox.horizon_url)
    builder = TransactionBuilder(server.load_account(keypair.public_key), PASSPHRASE, 100).set_timeout(60)
    envelope = builder.append_change_trust_op(Asset("USDC", sandbox.issuer())).build()
    envelope.sign(keypair)
    server.submit_transaction(envelope)


def wallet_secret(engine: Engine, settings: Settings, public_key: str) -> str:
    keyring = crypto.Keyring.from_settings(settings.wallet_encryption_key)
    with engine.connect() as conn:
        c, n, v = conn.execute(text("SELECT sealed_secret, nonce, key_version FROM wallets WHERE public_key = :p"),
                               {"p": public_key}).one()
    return crypto.open_sealed(keyring, crypto.Sealed(c, n, v), public_key=public_key)


@contextmanager
def cursors_of_another_chain(engine: Engine) -> Iterator[None]:
    """Set the run's monitor cursors aside (they belong to the run's sandbox) and put them back after."""
    with engine.begin() as conn:
        kept = conn.execute(text("SELECT name, value FROM cursors")).all()
        conn.execute(text("DELETE FROM cursors"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM cursors"))
            conn.execute(text("DELETE FROM operation_figures WHERE name = 'network'"))
            for name, value in kept:
                conn.execute(text("INSERT INTO cursors (name, value) VALUES (:n, :v)"), {"n": name, "v": value})


async def test_a_network_reset_under_a_running_monitor_credits_every_deposit_once_and_turns_health_critical(
        api: Api, engine: Engine, settings: Settings, worker: object) -> None:
    people = [await active_wallet(api, engine) for _ in range(2)]
    ids = [user["id"] for user, _ in people]
    secrets = [wallet_secret(engine, settings, wallet["public_key"]) for _, wallet in people]
    with start_sandbox() as url, cursors_of_another_chain(engine):
        chain = SandboxControl(url)
        for secret in secrets:
            open_account(chain, secret)
        env = {"SANDBOX_URL": url, "HORIZON_CHECK_SECONDS": "1"}
        with processes.process("-m", "orchestrator", "monitor", **env) as monitor:
            processes.wait_for(lambda: following(engine), what="the monitor to follow")
            paid = [chain.pay("issuer", wallet["public_key"], "1.00")["hash"] for _ in range(2) for _, wallet in people]
            await wait_credits(engine, ids, 4)
            # When testnet is reset under the running monitor
            chain.http.post(f"{url}/_sandbox/reset-network", json={}, timeout=10).raise_for_status()
            for secret in secrets:  # the wallets are opened again on the new chain
                open_account(chain, secret)
            paid += [chain.pay("issuer", w["public_key"], "2.00")["hash"] for _ in range(2) for _, w in people]
            # Then every deposit of both chains is credited exactly once
            counted = await wait_credits(engine, ids, 8)
            assert sorted(tx for _, tx in counted) == sorted(paid)
            assert set(counted.values()) == {1}
            for user_id in ids:
                assert (await api.balance(user_id))["available"] == "6.00"  # nothing adjusted by the reset
            with engine.connect() as conn:
                detected = conn.execute(text("SELECT count(*) FROM outbox WHERE event_type = "
                                             "'network.reset_detected'")).scalar_one()
            assert detected == 1
            health = await api.get("/health/detailed")
            assert health.status == 503
            assert health.data["status"] == "critical"
            assert health.data["operations"]["network"]["status"] == "critical"
            assert any("network was reset" in problem for problem in check.verify(engine).problems)
            # And a Horizon serving another network makes the monitor refuse to run, in one line
            chain.http.post(f"{url}/_sandbox/reset-network", json={"passphrase": "Not Ours ; 2027"},
                            timeout=10).raise_for_status()
            deadline = time.monotonic() + 30
            while monitor.poll() is None:
                assert time.monotonic() < deadline, "the monitor kept running against another network"
                await asyncio.sleep(0.2)
            assert monitor.returncode == 2


async def test_a_pruned_cursor_under_a_running_monitor_reads_each_wallet_and_credits_every_deposit_once(
        api: Api, engine: Engine, ledger: SandboxControl, worker: object) -> None:
    user, wallet = await active_wallet(api, engine)
    try:
        with processes.process("-m", "orchestrator", "monitor"):
            processes.wait_for(lambda: following(engine), what="the monitor to follow")
            await asyncio.sleep(0.5)
            # Given a stream that is down for a few seconds while Horizon prunes its history past the cursor
            ledger.add_fault(service="horizon", action="stream_disconnect", params={"status": 503}, times=4)
            ledger.add_fault(service="horizon", action="before_history", times=0)
            paid = [ledger.pay("issuer", wallet["public_key"], "3.00")["hash"] for _ in range(3)]
            counted = await wait_credits(engine, [user["id"]], 3)
    finally:
        ledger.clear_faults()
    assert sorted(tx for _, tx in counted) == sorted(paid)
    assert set(counted.values()) == {1}
    # Then the monitor read the wallet's own payments instead of streaming the network from the elder ledger
    assert sources(engine, user["id"]) == ["stellar_deposit_reconciled"]


async def test_a_contract_transfer_into_a_wallet_is_credited_once(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None) -> None:
    user, wallet = await active_wallet(api, engine)
    payer = ledger.create_account(usdc_trustline=True, usdc="20")
    sent = ledger.http.post(f"{ledger.base_url}/_sandbox/stellar/contract-transfer",
                            json={"from": payer["secret"], "to": wallet["public_key"], "amount": "7.25"}, timeout=10)
    assert sent.status_code == 200, sent.text
    counted = await wait_credits(engine, [user["id"]], 1)
    assert counted == {(user["id"], sent.json()["hash"]): 1}
    assert (await api.balance(user["id"]))["available"] == "7.25"
    assert credits(engine, [user["id"]]) == counted


async def test_reads_wait_for_horizons_request_budget_instead_of_failing(ledger: SandboxControl) -> None:
    budget = f"{ledger.base_url}/_sandbox/horizon/budget"
    ledger.http.post(budget, json={"requestsPerHour": 7200, "burst": 1}, timeout=5).raise_for_status()
    try:
        async with PaymentStream(ledger.horizon_url) as horizon:
            started = time.monotonic()
            for _ in range(3):
                await horizon.latest_cursor()  # the 2nd and 3rd are refused once each with Retry-After: 1
            assert time.monotonic() - started >= 1.0
            assert horizon.waited >= 1.0
    finally:
        ledger.http.post(budget, json={"requestsPerHour": 0}, timeout=5)


def test_the_chain_steps_client_waits_for_the_budget_too(ledger: SandboxControl, settings: Settings) -> None:
    from orchestrator.providers.horizon import Horizon

    budget = f"{ledger.base_url}/_sandbox/horizon/budget"
    ledger.http.post(budget, json={"requestsPerHour": 7200, "burst": 1}, timeout=5).raise_for_status()
    try:
        horizon = Horizon(settings)
        started = time.monotonic()
        for _ in range(3):  # refused, then answered after the Retry-After Horizon gives
            assert horizon.account(ledger.issuer()) is not None
        assert time.monotonic() - started >= 1.0
    finally:
        ledger.http.post(budget, json={"requestsPerHour": 0}, timeout=5)


async def test_a_read_refused_by_horizons_rate_limit_answers_502_with_its_retry_after(
        api: Api, engine: Engine, ledger: SandboxControl) -> None:
    # Given a user whose wallet the API reads live from Horizon, and Horizon's per-IP budget nearly spent
    user, _ = await active_wallet(api, engine)
    budget = f"{ledger.base_url}/_sandbox/horizon/budget"
    ledger.http.post(budget, json={"requestsPerHour": 3600, "burst": 1}, timeout=5).raise_for_status()
    try:
        # When the marketplace reads the wallet several times at once
        answers = [await api.get(f"/users/{user['id']}/wallet") for _ in range(4)]
    finally:
        ledger.http.post(budget, json={"requestsPerHour": 0}, timeout=5)
    # Then a refused read says so, and when to come back, instead of a generic network error
    refused = [reply for reply in answers if reply.status != 200]
    assert refused, [reply.status for reply in answers]
    for reply in refused:
        error = reply.body["error"]
        assert (reply.status, error["code"], error["details"]["provider"]) == (502, "PROVIDER_RATE_LIMITED",
                                                                               "horizon")
        assert int(reply.headers["Retry-After"]) >= 1
