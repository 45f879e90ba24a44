"""The AirTM enterprise balance in GET /health/detailed and in ``python -m orchestrator check``."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

from tests.airtm.helpers import funded_user, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.fixtures.processes import ROOT


def check(instance: AirtmInstance) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "check"], cwd=ROOT, capture_output=True,
                          text=True, check=False, env={**os.environ, **instance.env}, timeout=60)


async def test_the_enterprise_balance_is_reported_and_checked_against_the_users_balances(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    await funded_user(airtm_api, airtm, "20.00")
    health = await airtm_api.get("/health/detailed")
    assert health.status == 200, health.body
    found = health.data["dependencies"]["airtm"]
    assert found["status"] == "healthy", found
    treasury = found["treasury"]
    assert Decimal(treasury["enterpriseAvailable"]) == Decimal(str(airtm.enterprise()["available"]))
    assert Decimal(treasury["userBalances"]) >= Decimal("20.00")
    assert treasury["covered"] is True
    ok = check(airtm_instance)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "AirTM enterprise available" in ok.stdout

    saved = airtm.config()["enterpriseBalance"]
    airtm.config(enterpriseBalance=1)
    try:
        short = await airtm_api.get("/health/detailed")
        assert short.data["dependencies"]["airtm"]["status"] == "degraded"
        assert short.data["dependencies"]["airtm"]["treasury"]["covered"] is False
        failing = check(airtm_instance)
        assert failing.returncode == 1
        assert "does not cover" in failing.stdout
    finally:
        airtm.config(enterpriseBalance=saved)


def ledger_balances(airtm: AirtmControl, public_key: str) -> tuple[str, str | None]:
    """The account's XLM and USDC as the sandbox's ledger holds them (Horizon's seven-decimal strings)."""
    state = airtm.sandbox.state()
    lines = state["accounts"][public_key]["balances"]
    xlm = next(b["balance"] for b in lines if b["asset_type"] == "native")
    usdc = next((b["balance"] for b in lines if b.get("asset_code") == "USDC"
                 and b.get("asset_issuer") == state["usdc"]["issuer"]), None)
    return xlm, usdc


async def test_the_platforms_treasury_on_the_ledger_is_reported_beside_the_enterprise_balance(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    async def platform_wallet() -> dict[str, Any]:
        health = await airtm_api.get("/health/detailed")
        assert health.status == 200, health.body
        return dict(health.data["dependencies"]["airtm"]["treasury"]["platformWallet"])

    async def active() -> dict[str, Any] | None:  # bootstrap created it in AirTM mode too; the chain activates it
        wallet = await platform_wallet()
        return wallet if wallet["onLedger"] and wallet["usdc"] is not None else None

    wallet = await until(active, "the platform wallet to be active on the ledger", seconds=60)
    assert wallet["status"] == "ACTIVE"
    assert "error" not in wallet
    airtm.sandbox.pay("issuer", wallet["publicKey"], "12.3456789")  # the operator tops up the treasury
    xlm, usdc = ledger_balances(airtm, wallet["publicKey"])
    assert usdc is not None
    assert Decimal(usdc) >= Decimal("12.3456789")

    async def shown() -> dict[str, Any] | None:
        found = await platform_wallet()
        return found if (found["xlm"], found["usdc"]) == (xlm, usdc) else None

    await until(shown, "the health check to show the ledger's figures")
    ran = check(airtm_instance)
    # the platform wallet is WALLET-backed in either mode (decisions 25, 26): USDC paid to it outside the book
    # (no monitor runs here to credit it as a deposit) is a difference `check` reports, as in crypto mode
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert [line for line in ran.stdout.splitlines()
            if line.startswith("DIFF") and f"wallet {wallet['publicKey']} (ACTIVE)" in line], ran.stdout
    assert f"Platform wallet {wallet['publicKey']} (ACTIVE) on the ledger: {xlm} XLM, {usdc} USDC" in ran.stdout
