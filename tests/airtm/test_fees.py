"""AirTM's fees against the book (providers.md §3.4-3.6), with a non-zero fee on the sandbox.

A top-up credits its user ``amount`` while the enterprise account receives ``netAmount``: the
difference is the platform's expense, journaled once as its own entry, so the treasury check still adds
up to the cent (enterprise available = users' balances + payouts not yet sent + platform-owned) and the
operator's funds the book never saw stay what they were. A payout debits the enterprise its ``amount``
(no ``enterpriseFee`` is sent); AirTM's payout fee comes out of what the recipient receives and is shown
as the withdrawal's ``fee``.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.airtm.helpers import credits_for, linked_user, status_of, until
from tests.airtm.test_treasury import check
from tests.api import Api
from tests.fixtures.airtm import AirtmControl, AirtmInstance


@pytest.fixture
def fee_percent(airtm: AirtmControl) -> Iterator[Decimal]:
    """AirTM charges 2.5 % on this test's pay-ins and payouts (the sandbox's default is 0)."""
    airtm.config(feePercent="2.5")
    try:
        yield Decimal("2.5")
    finally:
        airtm.config(feePercent="0", webhookFormat="svix")


def fee_entries(engine: Engine, topup_id: str) -> list[tuple[str, Decimal]]:
    with engine.connect() as conn:
        return [(r.account, r.amount) for r in conn.execute(text(
            "SELECT e.account, e.amount FROM journal_entries e JOIN journal_transactions t ON t.id = e.transaction_id"
            " WHERE t.kind = 'airtm_fee' AND t.reference = :r ORDER BY e.amount"), {"r": topup_id})]


async def treasury(api: Api) -> dict[str, Decimal]:
    health = await api.get("/health/detailed")
    found = health.data["dependencies"]["airtm"]
    assert found["status"] == "healthy", found
    shown = found["treasury"]
    return {name: Decimal(value) for name, value in shown.items() if isinstance(value, str) and name != "currency"}


def adds_up(t: dict[str, Decimal]) -> bool:
    return t["enterpriseAvailable"] == t["userBalances"] + t["payoutsUnsent"] + t["platformOwned"]


async def settled(api: Api, operator_funds: Decimal) -> dict[str, Decimal]:
    """The treasury once AirTM and the book agree again (a webhook or a payout may still be on its way)."""
    async def probe() -> Any:
        t = await treasury(api)
        return t if t["operatorFunds"] == operator_funds and t["payoutsUnsent"] == 0 else None

    return dict(await until(probe, f"the operator's funds to be {operator_funds} again", seconds=30))


@pytest.mark.parametrize("webhook_format", ["svix", "legacy"])
async def test_a_topup_fee_is_the_platforms_expense_and_the_treasury_adds_up_to_the_cent(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance, fee_percent: Decimal,
        webhook_format: str) -> None:
    airtm.config(webhookFormat=webhook_format)  # the original's body shape carries no fee
    user, email = await linked_user(airtm_api, airtm)
    before = await treasury(airtm_api)
    assert adds_up(before), before
    reply = await airtm_api.post("/topups", {"userId": user["id"], "amount": "40.00"})
    assert reply.status == 201, reply.body
    topup = reply.data
    [payin] = airtm.payins_with_code(topup["id"])
    assert (Decimal(str(payin["airtmFee"])), Decimal(str(payin["netAmount"]))) == (Decimal("1.00"), Decimal("39.00"))
    airtm.payin(topup["airtmPayinId"], "confirm", email=email)
    await status_of(airtm_api, f"/topups/{topup['id']}", "TOPUP_SUCCEEDED")

    assert (await airtm_api.balance(user["id"]))["available"] == "40.00"  # the user is credited the amount
    assert credits_for(airtm_instance.engine, topup["id"]) == 1
    assert fee_entries(airtm_instance.engine, topup["id"]) == [
        ("platform:airtm_fees", Decimal("-1.00")), ("world:airtm", Decimal("1.00"))]
    after = await settled(airtm_api, before["operatorFunds"])
    assert adds_up(after), after
    assert after["enterpriseAvailable"] - before["enterpriseAvailable"] == Decimal("39.00")
    assert after["userBalances"] - before["userBalances"] == Decimal("40.00")
    assert after["platformOwned"] - before["platformOwned"] == Decimal("-1.00")
    assert after["airtmFeesPaid"] - before["airtmFeesPaid"] == Decimal("1.00")
    assert after["bookAtAirtm"] - before["bookAtAirtm"] == Decimal("39.00")

    # a refresh or a late report of the same pay-in journals nothing more
    assert (await airtm_api.post(f"/topups/{topup['id']}/refresh")).data["status"] == "TOPUP_SUCCEEDED"
    assert len(fee_entries(airtm_instance.engine, topup["id"])) == 2
    ran = check(airtm_instance)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "AirTM fees paid" in ran.stdout
    assert "platform-owned" in ran.stdout


async def test_a_payout_debits_the_enterprise_its_amount_and_shows_airtms_fee_on_the_withdrawal(
        airtm_api: Api, airtm: AirtmControl, airtm_instance: AirtmInstance, fee_percent: Decimal) -> None:
    user, email = await linked_user(airtm_api, airtm)
    reply = await airtm_api.post("/topups", {"userId": user["id"], "amount": "20.00"})
    airtm.payin(reply.data["airtmPayinId"], "confirm", email=email)
    await status_of(airtm_api, f"/topups/{reply.data['id']}", "TOPUP_SUCCEEDED")
    before = await settled(airtm_api, (await treasury(airtm_api))["operatorFunds"])

    created = await airtm_api.post("/withdrawals", {"userId": user["id"], "amount": "15.00",
                                                    "destinationType": "airtm_balance", "destinationRef": email,
                                                    "commit": True})
    assert created.status == 201, created.body
    done = await status_of(airtm_api, f"/withdrawals/{created.data['id']}", "WITHDRAWAL_COMPLETED")
    [payout] = airtm.payouts_with_code(created.data["id"])
    assert (payout["amount"], payout["netAmount"], payout["airtmFee"]) == (15.0, 14.62, 0.38)  # the recipient pays it
    assert done["fee"] == "0.38"
    assert (await airtm_api.balance(user["id"]))["available"] == "5.00"
    after = await settled(airtm_api, before["operatorFunds"])
    assert adds_up(after), after
    assert before["enterpriseAvailable"] - after["enterpriseAvailable"] == Decimal("15.00")
    assert (after["platformOwned"], after["airtmFeesPaid"]) == (before["platformOwned"], before["airtmFeesPaid"])
