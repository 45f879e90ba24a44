"""``Prefer: wait=N`` with thousands of digits is ignored like any wait past 60 s, not a 500 after the
command was recorded (api.md §1.12)."""

from __future__ import annotations

import pytest

from tests.api import Api, unique


@pytest.mark.parametrize(("prefer", "applied"), [("wait=" + "9" * 5000, None), ("wait=" + "0" * 5000 + "5", "wait=5"),
                                                ("wait=٣", None)])
async def test_an_outlandish_wait_is_ignored(api: Api, prefer: str, applied: str | None) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext")}, headers={"Prefer": prefer})
    assert reply.status == 201, reply.body  # the first two were: 500 (int() refuses over 4300 digits)
    assert reply.headers.get("Preference-Applied") == applied


async def test_a_wait_with_leading_zeros_is_applied_as_its_number(api: Api) -> None:
    reply = await api.post("/users", {"externalUserId": unique("ext")}, headers={"Prefer": "wait=0005"})
    assert reply.status == 201, reply.body
    assert reply.headers["Preference-Applied"] == "wait=5"
