"""``offerhub check`` compares each wallet's ledger USDC with the book (DESIGN decision 7).

The run's database and sandbox are shared with other tests (some reset the sandbox), so the
comparisons here are limited to this test's own users; the command itself compares every wallet.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine

from orchestrator.operations import check
from orchestrator.providers.horizon import Horizon
from orchestrator.settings import Settings
from tests import builders
from tests.api import Api
from tests.e2e.test_deposits import active_wallet, credited
from tests.fixtures import processes
from tests.fixtures.processes import ROOT, following
from tests.fixtures.sandbox import SandboxControl


@pytest.fixture
def horizon(settings: Settings, sandbox_url: str) -> Iterator[Horizon]:
    client = Horizon(settings, timeout=10)
    yield client
    client.http.close()


async def test_a_consistent_system_passes_the_ledger_comparison(
        api: Api, engine: Engine, ledger: SandboxControl, horizon: Horizon) -> None:
    # Given a user whose deposit the monitor credited, part of it then reserved, and a user who holds nothing
    payer, wallet = await active_wallet(api, engine)
    idle, _ = await active_wallet(api, engine)
    with processes.process("-m", "orchestrator", "monitor"):
        processes.wait_for(lambda: following(engine), what="the monitor to follow the stream")
        ledger.pay("issuer", wallet["public_key"], "25.5000001")
        await credited(engine, payer["id"], 1)
    assert not isinstance(builders.adjust(engine, "reserve", payer["id"], Decimal("10.00"), orderId="ord_check"),
                          Exception)
    # When the book is compared with the ledger
    report = check.verify(engine, horizon, user_ids=[payer["id"], idle["id"]])
    # Then both wallets were compared and nothing differs
    assert report.wallets_compared == 2
    assert report.differences == []
    assert report.problems == []
    assert report.ok


async def test_a_deposit_paid_on_the_ledger_but_never_credited_is_reported_with_the_exact_difference(
        api: Api, engine: Engine, ledger: SandboxControl, horizon: Horizon) -> None:
    # Given a wallet paid on the ledger while no monitor runs, so the book never credits it
    user, wallet = await active_wallet(api, engine)
    ledger.pay("issuer", wallet["public_key"], "7.1234567")
    # When the book is compared with the ledger
    report = check.verify(engine, horizon, user_ids=[user["id"]])
    # Then the one difference names the user and the exact amounts
    assert not report.ok
    [difference] = report.differences
    assert (difference.user_id, difference.public_key) == (user["id"], wallet["public_key"])
    assert (difference.book, difference.ledger, difference.adjustments) == (0, Decimal("7.1234567"), 0)
    assert difference.amount == Decimal("-7.1234567")
    line = difference.describe()
    assert user["id"] in line
    assert "ledger USDC 7.1234567" in line
    assert "difference -7.1234567" in line
    # And the operator command prints that line and exits non-zero
    done = await asyncio.create_subprocess_exec(sys.executable, "-m", "orchestrator", "check", cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(done.communicate(), timeout=120)
    assert done.returncode == 1, out.decode()[-2000:] + err.decode()[-2000:]
    assert f"DIFF {line}" in out.decode().splitlines()


async def test_admin_credits_and_debits_are_not_differences(api: Api, engine: Engine, horizon: Horizon) -> None:
    # Given a user credited 40.00 and debited 15.00 by an administrator: the book holds 25.00, the ledger nothing
    user, _ = await active_wallet(api, engine)
    for operation, amount in (("credit", "40.00"), ("debit", "15.00")):
        reply = await api.post(f"/users/{user['id']}/balance/{operation}", {"amount": amount})
        assert reply.status == 200, reply.body
    # When the book is compared with the ledger
    report = check.verify(engine, horizon, user_ids=[user["id"]])
    # Then the net adjustment explains the whole book balance (DESIGN decision 7)
    assert report.wallets_compared == 1
    assert report.differences == []
    assert report.ok


async def test_an_admin_credit_does_not_hide_an_uncredited_deposit(
        api: Api, engine: Engine, ledger: SandboxControl, horizon: Horizon) -> None:
    # Given an administrative credit of 3.00 and an uncredited ledger deposit of 2.00
    user, wallet = await active_wallet(api, engine)
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "3.00"})
    assert reply.status == 200, reply.body
    ledger.pay("issuer", wallet["public_key"], "2.00")
    # Then the difference is the deposit alone, with the credit counted as an adjustment
    [difference] = check.verify(engine, horizon, user_ids=[user["id"]]).differences
    assert (difference.book, difference.ledger, difference.adjustments) == (3, 2, 3)
    assert difference.amount == Decimal("-2.00")


def test_a_wallet_still_being_created_with_a_zero_book_is_no_difference(
        engine: Engine, settings: Settings, horizon: Horizon) -> None:
    # Given a wallet the product created whose activation has not landed yet (its messages were not sent)
    user_id = builders.user(engine, settings=settings)
    # When the book is compared with the ledger
    report = check.verify(engine, horizon, user_ids=[user_id])
    # Then it was compared and, owing nothing, is no difference (wallets being created are not false alarms)
    assert report.wallets_compared == 1
    assert report.differences == []
    assert report.ok


def test_a_wallet_still_being_created_whose_book_holds_money_is_a_difference(
        engine: Engine, settings: Settings, horizon: Horizon) -> None:
    # Given a wallet not yet on the ledger whose book nevertheless holds 5.00 (an administrative credit)
    user_id = builders.user(engine, settings=settings)
    assert not isinstance(builders.adjust(engine, "credit", user_id, Decimal("5.00")), Exception)
    # When the book is compared with the ledger
    report = check.verify(engine, horizon, user_ids=[user_id])
    # Then the wallet is reported as missing on the ledger
    [difference] = report.differences
    assert (difference.user_id, difference.ledger, difference.wallet_status) == (user_id, None, "CREATED")
    assert difference.book == Decimal("5.00")
    assert "missing on the ledger" in difference.describe()


@pytest.mark.parametrize(("book", "ledger", "adjustments", "difference", "discrepancy"), [
    ("100.00", "100.00", "0", "0.00", False),
    ("150.00", "100.00", "50.00", "0.00", False),  # an administrative credit the ledger never saw
    ("101.00", "100.00", "0", "1.00", False),  # the tolerance itself is not a discrepancy
    ("98.99", "100.00", "0", "-1.01", True),  # the wallet holds more than the book: negative
    ("100.00", "120.00", "-20.00", "0.00", False),  # an administrative debit
])
def test_the_balance_check_and_offerhub_check_share_one_formula(
        book: str, ledger: str, adjustments: str, difference: str, discrepancy: bool) -> None:
    compared = check.Comparison(Decimal(book), Decimal(adjustments), Decimal(ledger))
    assert compared.difference == Decimal(difference)
    assert compared.discrepancy is discrepancy
    assert compared.verified is not discrepancy
    listed = check.Difference("usr_x", "GX", "ACTIVE", Decimal(book), Decimal(0), Decimal(adjustments),
                              Decimal(ledger))
    assert listed.amount == compared.difference


def test_an_unknown_ledger_or_adjustment_compares_as_unknown_never_as_a_discrepancy() -> None:
    for compared in (check.Comparison(Decimal(5), Decimal(0), None), check.Comparison(Decimal(5), None, Decimal(0))):
        assert compared.difference is None
        assert not compared.discrepancy
    assert not check.Comparison(Decimal(5), Decimal(0), None).verified  # nothing was read on the ledger
