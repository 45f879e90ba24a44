"""The fund rule the web tier asks before the buyer's wallet signs (``escrows.require_buyer_funds``)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orchestrator.errors import BusinessRuleViolation
from orchestrator.escrow import escrows


def test_a_wallet_holding_the_amount_or_more_may_fund() -> None:
    escrows.require_buyer_funds(Decimal("100.00"), Decimal("100.00"))
    escrows.require_buyer_funds(Decimal("100.0000001"), Decimal("100.00"))


@pytest.mark.parametrize(("held", "shown"), [(Decimal("99.9999999"), "99.9999999"), (None, "0")])
def test_a_short_or_missing_wallet_is_refused_with_both_figures(held: Decimal | None, shown: str) -> None:
    with pytest.raises(BusinessRuleViolation) as refused:
        escrows.require_buyer_funds(held, Decimal("100.00"))
    assert refused.value.code == "ESCROW_INSUFFICIENT_FUNDS"
    assert refused.value.details == {"walletBalance": shown, "required": "100.00"}


def test_only_a_deployed_contract_awaiting_its_money_is_checked() -> None:
    assert escrows.awaits_buyer_funding("ESCROW_CREATING", "CREATED")
    assert not escrows.awaits_buyer_funding("ESCROW_CREATING", "CREATING")
    assert not escrows.awaits_buyer_funding("ESCROW_FUNDING", "FUNDING")
    assert not escrows.awaits_buyer_funding("FUNDS_RESERVED", None)
