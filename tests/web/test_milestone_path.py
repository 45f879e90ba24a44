"""A milestone ref in the path with a NUL character is an unknown milestone (404), not a 500."""

from __future__ import annotations

from tests.api import Api


async def test_a_nul_in_the_milestone_ref_is_an_unknown_milestone(api: Api) -> None:
    buyer, seller = await api.user(), await api.user()
    order = await api.post("/orders", {"buyerId": buyer["id"], "sellerId": seller["id"], "amount": "10.00",
                                       "title": "Logo", "milestones": [{"milestoneRef": "a", "title": "A",
                                                                        "amount": "10.00"}]})
    assert order.status == 201, order.body
    for ref in ("%00", "a%00"):
        reply = await api.post(f"/orders/{order.data['id']}/milestones/{ref}/complete")
        assert reply.status == 404, reply.body  # was: 500 (the command's JSON payload cannot hold NUL)
        assert reply.error["code"] == "MILESTONE_NOT_FOUND"
