"""Statements under random sequences of balance operations: opening + movements = closing, always, and the
closing balance of an open-ended statement is the user's balance."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from orchestrator.money import statements
from orchestrator.money.statements import Balance
from tests import builders
from tests.orchestrator.money.test_ledger import OPERATIONS, builders_balance

steps = st.lists(st.tuples(st.sampled_from(OPERATIONS), st.booleans(),
                           st.integers(1, 5_000).map(lambda cents: Decimal(cents) / 100)),
                 min_size=1, max_size=15)


def db_now(engine: Engine) -> datetime:
    with engine.connect() as conn:
        return conn.execute(text("SELECT clock_timestamp()")).scalar_one()


def total_change(statement: statements.Statement) -> Balance:
    total = Balance(Decimal(0), Decimal(0))
    for movement in statement.movements:
        total = total + movement.change
    return total


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=steps, cuts=st.tuples(st.integers(0, 15), st.integers(0, 15)))
def test_opening_plus_movements_is_closing_for_every_period(engine: Engine, sequence: list,
                                                             cuts: tuple[int, int]) -> None:
    # Given a user (and a counterparty) after a random sequence of operations, some refused
    user, other = builders.user(engine), builders.user(engine)
    moments = [db_now(engine)]
    for operation, as_seller, amount in sequence:
        extra = {"orderId": "ord_statement"} if operation not in ("credit", "debit") else {}
        actor = user
        if operation == "release":
            extra["sellerId"] = user if as_seller else other
            actor = other if as_seller else user
        builders.adjust(engine, operation, actor, amount, **extra)
        moments.append(db_now(engine))
    start, end = sorted(moments[min(c, len(moments) - 1)] for c in cuts)
    # When statements are read for the whole history, for a period, and from a moment on
    whole = statements.build(engine, user)
    period = statements.build(engine, user, since=start, until=end)
    before = statements.build(engine, user, until=start)
    since = statements.build(engine, user, since=start)
    # Then each one's opening plus its movements is its closing, and the running balance never skips
    for statement in (whole, period, before, since):
        assert statement.opening + total_change(statement) == statement.closing
        running = statement.opening
        for movement in statement.movements:
            running = running + movement.change
            assert movement.after == running
    # And the periods join up, and an open-ended statement closes on the user's balance
    assert whole.opening == Balance(Decimal(0), Decimal(0))
    assert period.opening == before.closing
    assert since.opening == before.closing
    balance = Balance(*builders_balance(engine, user))
    assert whole.closing == since.closing == balance
    assert whole.as_dict()["matchesBalance"] is True
    assert len(whole.movements) == len(before.movements) + len(since.movements)


def test_every_movement_names_what_caused_it(engine: Engine) -> None:
    user = builders.user(engine)
    builders.adjust(engine, "credit", user, Decimal("10.00"), reference="promo-7")
    builders.adjust(engine, "reserve", user, Decimal("4.00"), orderId="ord_abc")
    statement = statements.build(engine, user).as_dict()
    first, second = statement["movements"]
    assert (first["kind"], first["reference"], first["amount"], first["availableChange"]) == (
        "admin_credit", "promo-7", "10.00", "10.00")
    assert (second["kind"], second["orderId"], second["amount"]) == ("admin_reserve", "ord_abc", "0.00")
    assert (second["availableChange"], second["reservedChange"]) == ("-4.00", "4.00")
    assert statement["closingBalance"] == {"available": "6.00", "reserved": "4.00", "total": "10.00"}
    assert statement["totals"] == {"credits": "10.00", "debits": "0.00", "net": "10.00", "count": 2}
