"""``offerhub check`` and ``offerhub reconcile`` compare the treasury pool and the AirTM enterprise account with
the book to the stroop and the cent (issue 15 point 6): the pool's USDC on the ledger less the journal's pool
accounts is the operator's float, recorded by ``reconcile --record-float``; the escrows the pool backs are
compared with their contracts; the enterprise's funds beyond the AIRTM-backed claims are the operator's too.
Each is corrupted in turn and the difference is reported with its amount."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from tests.airtm.helpers import until
from tests.airtm.test_treasury_escrow import _sweeps, escrowed, ready_pool, treasury_order, usdc
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.fixtures.processes import ROOT


def operator(instance: AirtmInstance, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={**os.environ, **instance.env}, timeout=120)


def latest_report(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM reconciliation_reports ORDER BY created_at DESC LIMIT 1")).one()


async def quiet(engine: Engine, airtm: AirtmControl, accounts: dict[str, str]) -> None:
    """No settlement sweep running and nothing left to sweep: the pool's accounts hold still."""
    settlement = next(k for k, p in accounts.items() if p == "SETTLEMENT")

    async def still() -> bool:
        return not _sweeps(engine)[0] and usdc(airtm, settlement) == 0

    await until(still, "the settlement account to be swept", seconds=60)


def of_kind(report: Any, kind: str) -> list[dict[str, Any]]:
    return [d for d in report.differences if d["kind"] == kind and not d.get("pending")]


async def test_the_pool_its_escrows_and_the_enterprise_are_reconciled_to_the_stroop(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    engine = airtm_instance.engine
    accounts = await ready_pool(engine, airtm)
    _, _, order = await treasury_order(airtm_api, airtm, "15.00")
    escrow = (await escrowed(airtm_api, order["id"]))["escrow"]
    await quiet(engine, airtm, accounts)
    recorded = operator(airtm_instance, "reconcile", "--record-float")
    assert "FAIL the float" not in recorded.stdout, recorded.stdout + recorded.stderr
    report = latest_report(engine)
    pool = report.summary["treasuryPool"]
    assert pool["difference"] == "0.0000000", pool
    assert pool["backedEscrows"] >= 1
    assert Decimal(pool["backedAmount"]) >= Decimal("15.00")
    assert report.summary["airtm"]["recordedOperatorFunds"] == report.summary["airtm"]["operatorFunds"]
    assert not of_kind(report, "treasury_pool")
    assert not of_kind(report, "airtm_enterprise")
    assert not [d for d in of_kind(report, "escrow") if d.get("escrowId") == escrow["id"]]

    # USDC reaches a treasury account without the book (or the operator's record): reported to the stroop
    treasury = next(k for k, p in accounts.items() if p == "TREASURY")
    airtm.sandbox.pay("issuer", treasury, "1.2345678")
    await quiet(engine, airtm, accounts)
    operator(airtm_instance, "reconcile")
    [found] = of_kind(latest_report(engine), "treasury_pool")
    assert found["difference"] == "1.2345678", found
    checked = operator(airtm_instance, "check")
    assert checked.returncode == 1
    assert "the treasury pool's float is" in checked.stdout, checked.stdout
    assert "(difference +1.2345678)" in checked.stdout, checked.stdout
    # the operator acknowledges it: recorded, no difference any more
    operator(airtm_instance, "reconcile", "--record-float")
    assert not of_kind(latest_report(engine), "treasury_pool")

    # an escrow the pool backs whose book disagrees with its contract
    with engine.begin() as conn:
        conn.execute(text("UPDATE escrows SET amount = amount + 1 WHERE id = :e"), {"e": escrow["id"]})
    try:
        operator(airtm_instance, "reconcile")
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE escrows SET amount = amount - 1 WHERE id = :e"), {"e": escrow["id"]})
    [wrong] = [d for d in of_kind(latest_report(engine), "escrow") if d.get("escrowId") == escrow["id"]]
    assert (wrong["book"], wrong["expected"], wrong["ledger"]) == ("15.00", "16.00", "15.00"), wrong

    # the enterprise account holds a cent the book cannot explain
    saved = airtm.config()["enterpriseBalance"]
    airtm.config(enterpriseBalance=float(Decimal(str(saved)) + Decimal("0.01")))
    try:
        operator(airtm_instance, "reconcile")
        checked = operator(airtm_instance, "check")
    finally:
        airtm.config(enterpriseBalance=saved)
    [cent] = of_kind(latest_report(engine), "airtm_enterprise")
    assert cent["difference"] == "0.01", cent
    assert checked.returncode == 1
    assert "the AirTM enterprise holds operator funds" in checked.stdout, checked.stdout
