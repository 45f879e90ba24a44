"""The balance moves the ledger performs equal the spec's balance table (states.md §1.1), read as data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.balances import ADMIN_OPERATIONS
from orchestrator.ledger import AVAILABLE, MOVES, RESERVED

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "states.md"

#: Spec row -> the ledger move that implements it (rows with no user-side effect map to None).
ROWS = {
    "Deposit USDC": "deposit",
    "Reserve (order)": "reserve",
    "Cancel order": "cancel_order",
    "Fund escrow": "fund_escrow",
    "Release to seller": None,
    "Seller balance credited": "seller_credited",
    "Refund to buyer": None,
    "Buyer balance credited": "buyer_credited",
    "Withdrawal created": "withdrawal_created",
    "Withdrawal failed": "withdrawal_failed",
}


def spec_table(heading: str) -> list[list[str]]:
    text = SPEC.read_text()
    section = text[text.index(heading):]
    lines = [line for line in section.splitlines()[1:] if line.startswith("|")]
    rows = []
    for line in lines:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if set(cells[0]) <= {"-", " "}:
            continue
        rows.append(cells)
        if not line.startswith("|"):
            break
    return rows


def sign(cell: str) -> int:
    cell = cell.replace("\u2212", "-")
    if re.match(r"^\+", cell):
        return 1
    if re.match(r"^-", cell):
        return -1
    return 0


def effect(move: str) -> tuple[int, int]:
    source, destination = MOVES[move]
    available = (destination == AVAILABLE) - (source == AVAILABLE)
    reserved = (destination == RESERVED) - (source == RESERVED)
    return available, reserved


def balance_rows() -> list[list[str]]:
    rows = spec_table("### 1.1 Balance operations")
    header, body = rows[0], rows[1:]
    assert header[:3] == ["Operation", "`available`", "`reserved`"]
    return body[: len(ROWS)]


@pytest.mark.parametrize("row", balance_rows(), ids=lambda r: r[0])
def test_each_balance_operation_moves_available_and_reserved_as_the_spec_says(row: list[str]) -> None:
    name, available, reserved = row[0], row[1], row[2]
    assert name in ROWS, f"the spec has a balance operation the ledger does not know: {name}"
    move = ROWS[name]
    expected = (sign(available), sign(reserved))
    if move is None:
        assert expected == (0, 0)
    else:
        assert effect(move) == expected


def test_every_spec_row_is_covered_and_every_administrative_move_is_a_known_kind() -> None:
    assert [row[0] for row in balance_rows()] == list(ROWS)
    assert set(ADMIN_OPERATIONS) == {"credit", "debit", "reserve", "cancel-reservation", "deduct-reserved",
                                     "release"}
