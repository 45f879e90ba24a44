"""Amounts sent to AirTM: JSON numbers (its API types them so) that carry exactly the book's digits."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from orchestrator.providers.airtm import _json_number


@pytest.mark.parametrize("amount", ["0.01", "12.30", "100.00", "9999999999999.99"])
def test_an_amount_is_written_digit_for_digit(amount: str) -> None:
    written = json.dumps({"amount": Decimal(amount)}, default=_json_number)
    assert Decimal(json.loads(written, parse_float=Decimal)["amount"]) == Decimal(amount)


def test_an_amount_a_float_would_round_is_refused_not_sent() -> None:
    with pytest.raises(ValueError, match="without rounding"):
        json.dumps({"amount": Decimal("12345678901234567.89")}, default=_json_number)
