"""Amounts sent to AirTM: JSON numbers (its API types them so) that carry exactly the book's digits."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from orchestrator.providers.airtm import json_text


@pytest.mark.parametrize("amount", ["0.01", "12.30", "100.00", "9999999999999.99"])
def test_an_amount_is_written_digit_for_digit(amount: str) -> None:
    written = json_text({"amount": Decimal(amount)})
    assert Decimal(json.loads(written, parse_float=Decimal)["amount"]) == Decimal(amount)


def test_an_amount_a_float_would_round_is_refused_not_sent() -> None:
    with pytest.raises(ValueError, match="without rounding"):
        json_text({"amount": Decimal("12345678901234567.89")})


def test_a_body_reads_back_as_json_dumps_would_write_it_with_amounts_as_given() -> None:
    body = {"code": "tp_\"1\"", "amount": Decimal("12.30"), "nested": {"items": [Decimal("0.01"), 2, True, None]},
            "note": "ñandú"}
    back = json.loads(json_text(body), parse_float=Decimal)
    assert back == {**body, "amount": Decimal("12.30"), "nested": {"items": [Decimal("0.01"), 2, True, None]}}
    assert json_text({"code": "x", "n": 1}) == json.dumps({"code": "x", "n": 1})
