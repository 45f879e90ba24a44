"""AirTM mode: each webhook delivery is one ``webhook.received`` audit entry, and ``reconcile`` compares
the enterprise balance and each top-up's status with AirTM (issue 10)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from typing import Any

from sqlalchemy import text

from tests.airtm.helpers import funded_user, until
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance
from tests.fixtures.processes import ROOT


def reconcile(instance: AirtmInstance) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "reconcile"], cwd=ROOT, capture_output=True,
                          text=True, check=False, env={**os.environ, **instance.env}, timeout=120)


def latest_report(instance: AirtmInstance) -> Any:
    with instance.engine.connect() as conn:
        return conn.execute(text("SELECT * FROM reconciliation_reports ORDER BY created_at DESC LIMIT 1")).one()


async def test_each_webhook_delivery_is_one_redacted_entry_by_the_webhook_actor(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, email = await funded_user(airtm_api, airtm, "15.00")
    topup = (await airtm_api.get(f"/topups?userId={user['id']}")).data[0]

    async def entries() -> list[Any]:
        with airtm_instance.engine.connect() as conn:
            return list(conn.execute(text(
                "SELECT * FROM audit_log WHERE action = 'webhook.received' AND resource_id = :t"),
                {"t": topup["id"]}).mappings())

    found = await until(entries, "the webhook's audit entry")
    assert {(e["actor_type"], e["actor_id"], e["resource_type"]) for e in found} == {("WEBHOOK", "airtm", "TopUp")}
    # one entry per delivery (svix-id), however often AirTM delivered it
    assert set(Counter(e["correlation_id"] for e in found).values()) == {1}
    with airtm_instance.engine.connect() as conn:
        deliveries = set(conn.execute(text("SELECT message_id FROM airtm_webhooks WHERE status <> 'PENDING' AND "
                                           "body->'data'->>'code' = :t"), {"t": topup["id"]}).scalars())
    assert {e["correlation_id"] for e in found} == deliveries
    assert email not in str(found)
    assert all(e["result"] == "SUCCESS" for e in found)


async def test_reconcile_compares_the_enterprise_balance_and_each_topup_with_airtm(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance) -> None:
    user, _ = await funded_user(airtm_api, airtm, "11.00")
    topup = (await airtm_api.get(f"/topups?userId={user['id']}")).data[0]
    # a clean run compares the top-up and finds nothing about it
    clean = reconcile(airtm_instance)
    assert "enterprise available" in clean.stdout, clean.stdout + clean.stderr
    report = latest_report(airtm_instance)
    assert report.summary["airtm"]["itemsCompared"] >= 1
    assert not [d for d in report.differences if d.get("id") == topup["id"]]
    # When the book's top-up says FAILED although AirTM confirmed it, and the enterprise cannot cover the users
    saved = airtm.config()["enterpriseBalance"]
    with airtm_instance.engine.begin() as conn:
        conn.execute(text("UPDATE topups SET status = 'TOPUP_FAILED', updated_at = now() WHERE id = :t"),
                     {"t": topup["id"]})
    airtm.config(enterpriseBalance=1)
    try:
        failing = reconcile(airtm_instance)
    finally:
        airtm.config(enterpriseBalance=saved)
        with airtm_instance.engine.begin() as conn:
            conn.execute(text("UPDATE topups SET status = 'TOPUP_SUCCEEDED' WHERE id = :t"), {"t": topup["id"]})
    # Then both are differences of the stored report, and the command fails
    assert failing.returncode == 1, failing.stdout + failing.stderr
    report = latest_report(airtm_instance)
    assert report.status == "DIFFERENCES"
    kinds = {d["kind"]: d for d in report.differences}
    assert kinds["airtm_treasury"]["covered"] is False
    [wrong] = [d for d in report.differences if d.get("id") == topup["id"]]
    assert (wrong["book"], wrong["airtm"]) == ("TOPUP_FAILED", "CONFIRMED")
    with airtm_instance.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE aggregate_id = :r AND event_type = "
                                 "'reconciliation.differences_found'"), {"r": report.id}).scalar() == 1
