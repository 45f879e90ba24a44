"""The ledger under random sequences of balance operations: always balanced, never negative."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from orchestrator.errors import InsufficientFunds
from orchestrator.money import ledger
from orchestrator.operations import check
from orchestrator.settings import Settings
from tests import builders

OPERATIONS = ["credit", "debit", "reserve", "cancel-reservation", "deduct-reserved", "release"]
#: Effect of each operation on (available, reserved) of the user, and on the seller's available.
MODEL = {"credit": (1, 0), "debit": (-1, 0), "reserve": (-1, 1), "cancel-reservation": (1, -1),
         "deduct-reserved": (0, -1), "release": (0, -1)}

steps = st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 2), st.integers(0, 2),
                           st.integers(1, 20_000).map(lambda cents: Decimal(cents) / 100)),
                 min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps)
def test_random_operations_keep_the_book_balanced_and_never_negative(engine: Engine, sequence: list) -> None:
    # Given three fresh users with zero balances
    people = [builders.user(engine) for _ in range(3)]
    model = {p: [Decimal(0), Decimal(0)] for p in people}
    for operation, who, other, amount in sequence:
        user_id, seller_id = people[who], people[other]
        extra = {"orderId": "ord_test"} if operation not in ("credit", "debit") else {}
        if operation == "release":
            extra["sellerId"] = seller_id
        # When the operation runs through the product's command handler
        outcome = builders.adjust(engine, operation, user_id, amount, **extra)
        d_available, d_reserved = MODEL[operation]
        after = [model[user_id][0] + d_available * amount, model[user_id][1] + d_reserved * amount]
        # Then it is refused exactly when it would make a balance negative, and applied otherwise
        if after[0] < 0 or after[1] < 0:
            assert isinstance(outcome, InsufficientFunds), outcome
            continue
        assert not isinstance(outcome, Exception), outcome
        model[user_id] = after
        if operation == "release":
            model[seller_id][0] += amount
    report = check.verify(engine)
    assert report.ok, report.problems
    for person, (available, reserved) in model.items():
        assert builders_balance(engine, person) == (available, reserved)


def builders_balance(engine: Engine, user_id: str) -> tuple[Decimal, Decimal]:
    from orchestrator.db import ledger as ledger_db
    from orchestrator.db import session

    with session.transaction(engine) as conn:
        row = ledger_db.lock_balances(conn, [user_id])[user_id]
    return row.available, row.reserved


def test_a_transfer_that_does_not_balance_is_refused_before_it_reaches_the_book(engine: Engine) -> None:
    from orchestrator.errors import InternalError
    from orchestrator.unit_of_work import UnitOfWork

    user_id = builders.user(engine)
    with UnitOfWork(engine) as uow:
        try:
            ledger.post(uow, kind="broken", legs=[(ledger.user_account(user_id, "available"), Decimal("5"))])
        except InternalError:
            pass
        else:
            raise AssertionError("an unbalanced posting was accepted")


def test_an_administrative_release_goes_through_the_adjustment_account_for_both_users(
        engine: Engine, settings: Settings) -> None:
    """Decision 7: each user's book equals their wallet's ledger USDC plus their adjustments, so a
    book-only move between two users must show up as an adjustment of each."""
    from orchestrator.db import reconciliation, session

    buyer, seller = builders.user(engine, settings=settings), builders.user(engine, settings=settings)
    builders.adjust(engine, "credit", buyer, Decimal("30.00"))
    builders.adjust(engine, "reserve", buyer, Decimal("10.00"), orderId="ord_r")
    builders.adjust(engine, "release", buyer, Decimal("10.00"), orderId="ord_r", sellerId=seller)
    with session.transaction(engine) as conn:
        net = {b.user_id: b.adjustments for b in reconciliation.wallet_books(
            conn, adjustment_account=ledger.ADJUSTMENT, user_ids=[buyer, seller])}
        balances = ledger_db_balances(conn, [buyer, seller])
    # nothing reached either wallet on the ledger, so each book is exactly its adjustments
    assert balances == net == {buyer: Decimal("20.00"), seller: Decimal("10.00")}


def ledger_db_balances(conn: object, user_ids: list[str]) -> dict[str, Decimal]:
    from orchestrator.db import ledger as ledger_db

    rows = ledger_db.lock_balances(conn, user_ids)  # type: ignore[arg-type]
    return {uid: row.available + row.reserved for uid, row in rows.items()}
