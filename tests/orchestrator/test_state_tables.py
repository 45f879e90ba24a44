"""The balance moves and state machines of the code equal the tables the docs show, read as data.

The pages are docs/developers/concepts/balances.md and states.md: a change to either side fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.money.balances import ADMIN_OPERATIONS
from orchestrator.money.ledger import AVAILABLE, MOVES, RESERVED

CONCEPTS = Path(__file__).resolve().parents[2] / "docs" / "developers" / "concepts"
SPEC = CONCEPTS / "states.md"
BALANCES = CONCEPTS / "balances.md"

#: Docs row -> the ledger move that implements it (rows with no user-side effect map to None).
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


def spec_table(heading: str, page: Path = SPEC) -> list[list[str]]:
    """The first Markdown table after ``heading``, as rows of cells (the separator row left out)."""
    text = page.read_text()
    lines = text[text.index(heading):].splitlines()[1:]
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
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
    rows = spec_table("### Balance operations", BALANCES)
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


def transition_table(heading: str) -> dict[str, set[str]]:
    """A "From | Allowed targets" table as data (``*`` marks failure-only targets)."""
    rows = spec_table(heading)
    table = {}
    for row in rows[1:]:
        source = row[0].strip("`")
        if not source.isupper():
            break
        targets = {t.strip().strip("`").rstrip("*").strip("`") for t in row[1].split(",") if t.strip() not in ("—", "")}
        table[source] = targets
    return table


def test_the_order_transition_table_equals_the_spec() -> None:
    from orchestrator.escrow.orders import TRANSITIONS

    assert transition_table("### Order transitions") == {
        str(s): {str(t) for t in targets} for s, targets in TRANSITIONS.items()}


def test_failure_only_order_moves_are_the_starred_ones() -> None:
    from orchestrator.escrow.orders import FAILURE_ONLY

    rows = spec_table("### Order transitions")[1:]
    starred = {(row[0].strip("`"), t.strip().strip("`").rstrip("*").strip("`"))
               for row in rows if row[0].strip("`").isupper() for t in row[1].split(",") if t.strip().endswith("*")}
    assert starred == {(str(a), str(b)) for a, b in FAILURE_ONLY}


def test_milestones_go_from_open_to_completed_only() -> None:
    from orchestrator.escrow.orders import MILESTONE_TRANSITIONS

    rows = spec_table("## Milestones")
    moves = {(row[0].strip("`"), row[1].strip("`")) for row in rows[1:] if row[0].strip("`") != "—"}
    assert moves == {(str(a), str(b)) for a, targets in MILESTONE_TRANSITIONS.items() for b in targets}


def test_every_api_action_is_an_allowed_move_that_is_not_failure_only() -> None:
    from orchestrator.escrow.orders import ACTIONS, FAILURE_ONLY, TRANSITIONS

    for action, (sources, target) in ACTIONS.items():
        for source in sources:
            assert target in TRANSITIONS[source], action
            assert (source, target) not in FAILURE_ONLY, action


def test_the_escrow_transitions_equal_the_spec() -> None:
    from orchestrator.escrow.escrows import FAILURE_ONLY, TRANSITIONS

    rows = spec_table("### Escrow transitions")[1:]
    moves = {(row[0].strip("`"), row[1].strip("`")) for row in rows
             if row[0].strip("`").isupper() and row[1].strip("`").isupper()}
    assert moves == {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    new = {(row[0].strip("`"), row[1].strip("`")) for row in rows if "(failure)" in row[2]}
    assert new == {(str(a), str(b)) for a, b in FAILURE_ONLY}


def test_the_dispute_transitions_equal_the_spec() -> None:
    from orchestrator.escrow.dispute_outcomes import TRANSITIONS

    rows = spec_table("### Dispute transitions")[1:]
    moves = {(row[0].strip("`"), row[1].strip("`")) for row in rows if row[0].strip("`") != "—"}
    assert moves == {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}


def test_the_withdrawal_transitions_equal_the_spec() -> None:
    from orchestrator.payments.withdrawal_states import TRANSITIONS

    moves = set()
    for row in spec_table("### Withdrawal transitions")[1:]:
        sources = [c.strip().strip("`") for c in row[0].split(",")]
        moves |= {(source, row[1].strip("`")) for source in sources if source != "—"}
    assert moves == {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
