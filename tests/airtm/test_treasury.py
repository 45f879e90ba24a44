"""The AirTM enterprise balance in GET /health/detailed and in ``python -m orchestrator check``."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal

from tests.airtm.helpers import funded_user
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
