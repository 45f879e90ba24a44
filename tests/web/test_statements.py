"""``GET /users/{userId}/statement``: JSON and CSV, the same lines; bad periods are 400, unknown users 404."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from tests.api import Api


async def test_a_statement_lists_every_movement_between_opening_and_closing(api: Api) -> None:
    user = await api.funded_user("30.00")
    assert (await api.post(f"/users/{user['id']}/balance/reserve", {"amount": "12.00", "orderId": "ord_x1"})).status \
        == 200
    assert (await api.post(f"/users/{user['id']}/balance/debit",
                           {"amount": "5.00", "description": "=HYPERLINK(\"x\")"})).status == 200
    reply = await api.get(f"/users/{user['id']}/statement")
    assert reply.status == 200, reply.body
    data = reply.data
    assert data["openingBalance"] == {"available": "0.00", "reserved": "0.00", "total": "0.00"}
    assert [m["kind"] for m in data["movements"]] == ["admin_credit", "admin_reserve", "admin_debit"]
    assert data["movements"][1]["orderId"] == "ord_x1"
    assert data["closingBalance"] == {"available": "13.00", "reserved": "12.00", "total": "25.00"}
    balance = await api.balance(user["id"])
    assert (balance["available"], balance["reserved"]) == ("13.00", "12.00")
    assert data["matchesBalance"] is True
    assert sum(Decimal(m["amount"]) for m in data["movements"]) == Decimal("25.00")

    # the same statement as CSV: opening, the three movements, closing; formulas neutralised
    as_csv = await api.get(f"/users/{user['id']}/statement", headers={"Accept": "text/csv"})
    assert as_csv.status == 200
    assert as_csv.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.body)))
    assert [r["line"] for r in rows] == ["OPENING", "MOVEMENT", "MOVEMENT", "MOVEMENT", "CLOSING"]
    assert [r["amount"] for r in rows[1:4]] == [m["amount"] for m in data["movements"]]
    assert (rows[-1]["available"], rows[-1]["reserved"], rows[-1]["total"]) == ("13.00", "12.00", "25.00")
    assert rows[3]["description"].startswith("'=")
    assert Decimal(rows[0]["total"]) + sum(Decimal(r["amount"]) for r in rows[1:4]) == Decimal(rows[-1]["total"])


async def test_a_period_opens_where_the_earlier_one_closed(api: Api) -> None:
    user = await api.funded_user("8.00")
    movements = (await api.get(f"/users/{user['id']}/statement")).data["movements"]
    moment = movements[0]["occurredAt"]
    after = (await api.get(f"/users/{user['id']}/statement?from=2099-01-01")).data
    assert after["openingBalance"]["total"] == "8.00"
    assert after["movements"] == []
    assert after["closingBalance"]["total"] == "8.00"
    upto = (await api.get(f"/users/{user['id']}/statement?from=2000-01-01&to={moment}")).data
    assert [m["transactionId"] for m in upto["movements"]] == [movements[0]["transactionId"]]
    assert upto["matchesBalance"] is None  # a closed period is not compared with today's balance


@pytest.mark.parametrize(("query", "field"), [
    ("from=last-week", "from"), ("to=2026-02-30", "to"), ("month=3", "month"),
    ("from=2026-12-02&to=2026-12-01", "from"),
])
async def test_bad_periods_are_validation_errors(api: Api, query: str, field: str) -> None:
    user = await api.user()
    reply = await api.get(f"/users/{user['id']}/statement?{query}")
    assert reply.status == 400
    assert reply.error["code"] == "VALIDATION_ERROR"
    assert reply.error["details"]["fields"][0]["field"] == field


@pytest.mark.parametrize("user_id", ["usr_doesnotexist", "ord_wrongprefix"])
async def test_an_unknown_user_has_no_statement(api: Api, user_id: str) -> None:
    reply = await api.get(f"/users/{user_id}/statement")
    assert reply.status == 404
    assert reply.error["code"] == "USER_NOT_FOUND"
