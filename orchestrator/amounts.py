"""Money as ``Decimal`` with Stellar's seven places: parsing, quantizing and formatting in one place."""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal

#: Stellar keeps 7 decimals for every asset; the database column is NUMERIC(20,7) (db/tables.py).
PLACES = 7
QUANTUM = Decimal(1).scaleb(-PLACES)
CENT = Decimal("0.01")
ZERO = Decimal("0")
#: The largest value a NUMERIC(20,7) column holds: 13 integer digits and 7 decimals.
MAX_BALANCE = Decimal("9999999999999.9999999")
#: Request amounts: exactly two decimals, no sign, at most 13 integer digits (spec api.md §1.4).
REQUEST_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,12})\.[0-9]{2}")


class AmountFormatError(ValueError):
    """Raised when a string is not an amount in the request format."""


def parse_request_amount(text: str) -> Decimal:
    """Parse a request amount strictly: ``"10.005"`` is refused, never rounded."""
    if not isinstance(text, str) or not REQUEST_AMOUNT.fullmatch(text):
        raise AmountFormatError(text)
    return Decimal(text)


def quantize(value: Decimal) -> Decimal:
    """Bring a value to the ledger's 7 places; raises if that would lose value."""
    exact = value.quantize(QUANTUM, rounding=ROUND_DOWN)
    if exact != value:
        raise ValueError(f"{value} has more than {PLACES} decimals")
    return exact


def format_amount(value: Decimal) -> str:
    """Two-decimal rendering for orders, escrows, top-ups and withdrawals (always whole cents)."""
    if value != value.quantize(CENT):
        raise ValueError(f"{value} is not a whole number of cents")
    return f"{value.quantize(CENT):f}"


def format_balance(value: Decimal) -> str:
    """At least two decimals, up to seven when the book holds sub-cent value; never rounded."""
    exact = value.quantize(QUANTUM)
    text = f"{exact:f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"
