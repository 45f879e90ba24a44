"""A balance cannot grow past what the book's NUMERIC(20,7) columns hold (found by the contract test)."""

from __future__ import annotations

from tests.api import Api

MOST = "9999999999999.99"


async def test_a_credit_past_the_books_capacity_is_refused_at_once(api: Api) -> None:
    user = await api.user()
    assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": MOST})).status == 200
    reply = await api.post(f"/users/{user['id']}/balance/credit", {"amount": "0.01"},
                           headers={"Prefer": "wait=10"})
    assert reply.status == 400, reply.body  # was: 202, then retried until an internal error
    [field] = reply.error["details"]["fields"]
    assert (field["field"], field["code"], field["max"]) == ("amount", "AMOUNT_OUT_OF_RANGE", "9999999999999.9999999")
    assert (await api.balance(user["id"]))["available"] == MOST


async def test_a_release_that_would_overflow_the_seller_is_refused(api: Api) -> None:
    seller = await api.user()
    assert (await api.post(f"/users/{seller['id']}/balance/credit", {"amount": MOST})).status == 200
    buyer = await api.funded_user("5.00")
    assert (await api.post(f"/users/{buyer['id']}/balance/reserve",
                           {"amount": "5.00", "orderId": "ord_capacity"})).status == 200
    reply = await api.post(f"/users/{buyer['id']}/balance/release",
                           {"amount": "5.00", "orderId": "ord_capacity", "sellerId": seller["id"]})
    assert reply.status == 400, reply.body
    assert reply.error["details"]["fields"][0]["code"] == "AMOUNT_OUT_OF_RANGE"
    assert (await api.balance(buyer["id"]))["reserved"] == "5.00"
