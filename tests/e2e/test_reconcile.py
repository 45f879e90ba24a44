"""The reconciliation report against the sandbox's ledger and Trustless Work.

The run's database and sandbox are shared with other tests (some leave deliberate differences behind),
so assertions look at this module's own users and escrows; the report itself covers everything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator.escrow.escrows import ESCROW_ACCOUNT
from orchestrator.money.ledger import transfer
from orchestrator.operations import reconcile
from orchestrator.settings import Settings
from orchestrator.unit_of_work import Context, UnitOfWork
from tests.api import Api
from tests.e2e.test_deposits import active_wallet
from tests.e2e.test_escrow_flow import in_progress_order
from tests.fixtures.processes import ROOT
from tests.fixtures.sandbox import SandboxControl


@pytest.fixture
def clients(settings: Settings, sandbox_url: str) -> Iterator[tuple[Any, Any]]:
    horizon, trustless = reconcile.providers(settings)
    yield horizon, trustless
    horizon.http.close()
    trustless.http.close()


def about(report: reconcile.Report, *subjects: str) -> list[dict[str, Any]]:
    return [d for d in report.differences + report.pending
            if {d.get("userId"), d.get("orderId"), d.get("escrowId")} & set(subjects)]


def stored(engine: Engine, report_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM reconciliation_reports WHERE id = :i"), {"i": report_id}).one()


async def test_a_deposit_the_book_never_credited_is_a_wallet_difference_with_both_amounts(
        api: Api, engine: Engine, ledger: SandboxControl, settings: Settings, clients: tuple[Any, Any]) -> None:
    # Given a wallet paid on the ledger while no monitor runs (first in the module: the monitor starts later)
    user, wallet = await active_wallet(api, engine)
    ledger.pay("issuer", wallet["public_key"], "2.5000001")
    # When the report runs
    report = reconcile.run(engine, settings, horizon=clients[0], trustless=clients[1], trigger="test")
    # Then the wallet is a difference naming the book and the ledger
    [difference] = about(report, user["id"])
    assert (difference["kind"], difference["publicKey"]) == ("wallet", wallet["public_key"])
    assert (difference["book"], difference["ledger"], difference["difference"]) == ("0.00", "2.5000001", "-2.5000001")
    assert difference in report.differences
    assert not report.ok


async def test_a_funded_escrow_and_its_parties_reconcile_with_the_ledger_and_the_contract(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None, settings: Settings,
        clients: tuple[Any, Any]) -> None:
    order, buyer, seller, _ = await in_progress_order(api, engine, ledger, "40.00")
    report = reconcile.run(engine, settings, horizon=clients[0], trustless=clients[1], trigger="test")
    assert about(report, order["id"], buyer["id"], seller["id"]) == []
    assert report.summary["escrowsCompared"] >= 1
    assert report.summary["walletsCompared"] >= 2
    row = stored(engine, report.id)
    assert (row.trigger, row.status) == ("test", report.status)


async def test_a_book_error_on_an_escrow_is_reported_with_an_event_and_an_audit_entry(
        api: Api, engine: Engine, ledger: SandboxControl, monitor: None, settings: Settings,
        clients: tuple[Any, Any]) -> None:
    # Given a funded escrow whose book account lost 1.00 to a wrong posting
    order, *_ = await in_progress_order(api, engine, ledger, "30.00")
    with UnitOfWork(engine, Context(actor_type="SUPPORT", actor_id="tests")) as uow:
        transfer(uow, kind="test_wrong_posting", amount=Decimal("1.00"),
                 source=ESCROW_ACCOUNT.format(order_id=order["id"]), destination="world:test")
        uow.commit()
    # When the report runs
    report = reconcile.run(engine, settings, horizon=clients[0], trustless=clients[1], trigger="test")
    # Then the escrow's difference names both sides
    [escrow] = about(report, order["id"])
    assert (escrow["kind"], escrow["book"], escrow["expected"], escrow["ledger"]) == (
        "escrow", "29.00", "30.00", "30.00")
    assert escrow["difference"] == "-1.00"
    assert not report.ok
    # And the report is stored, with an event and its audit entry naming it
    row = stored(engine, report.id)
    assert row.status == "DIFFERENCES"
    assert any(d.get("orderId") == order["id"] for d in row.differences)
    with engine.connect() as conn:
        event = conn.execute(text("SELECT payload FROM outbox WHERE aggregate_id = :r AND event_type = "
                                  "'reconciliation.differences_found'"), {"r": report.id}).scalar_one()
        entry = conn.execute(text("SELECT actor_type, actor_id, resource_type FROM audit_log WHERE resource_id = :r"),
                             {"r": report.id}).one()
    assert event["reportId"] == report.id
    assert event["differences"] == len(report.differences)
    assert tuple(entry) == ("SYSTEM", "reconcile:test", "Reconciliation")


def test_airtm_mode_says_airtm_is_not_compared_yet(engine: Engine, settings: Settings) -> None:
    airtm = dataclasses.replace(settings, payment_provider="airtm")
    report = reconcile.run(engine, airtm, trigger="test")
    assert report.summary["airtm"].startswith("not compared")


def test_the_scheduled_report_is_due_once_per_interval(engine: Engine, settings: Settings) -> None:
    daily = dataclasses.replace(settings, reconcile_interval_hours=24.0)
    reconcile.run(engine, settings, trigger="test")
    assert not reconcile.due(engine, daily)
    assert reconcile.due(engine, dataclasses.replace(settings, reconcile_interval_hours=1e-9))
    assert not reconcile.due(engine, dataclasses.replace(settings, reconcile_interval_hours=0))


async def test_the_reconcile_command_prints_its_report(engine: Engine) -> None:
    done = await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "reconcile", cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(done.communicate(), timeout=300)
    printed = out.decode()
    assert done.returncode in (0, 1), printed[-2000:] + err.decode()[-2000:]
    report_id = printed.strip().splitlines()[-1].split()[1].rstrip(":")
    assert report_id.startswith("rec_")
    row = stored(engine, report_id)
    assert row.trigger == "cli"
    assert (done.returncode == 0) == (row.status == "OK")
