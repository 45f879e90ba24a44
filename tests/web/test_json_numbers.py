"""A JSON number too large for a float (``1e999``) is a 400, not a 500 when it is stored as JSON again."""

from __future__ import annotations

import pytest

from tests.api import Api, unique


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400"])
async def test_a_number_beyond_a_float_is_a_validation_error(api: Api, number: str) -> None:
    body = f'{{"externalUserId": "{unique("ext")}", "metadata": {{"size": {number}}}}}'
    headers = {"Authorization": f"Bearer {api.credential}", "Content-Type": "application/json"}
    async with api.client.post("/api/v1/users", data=body, headers=headers) as resp:
        reply = await resp.json()
    assert resp.status == 400, reply  # was: 500 (Infinity cannot be stored as JSON)
    assert reply["error"]["details"]["fields"] == [
        {"field": "body", "code": "INVALID_JSON", "message": "body is not valid JSON"}]


async def test_large_finite_numbers_are_kept(api: Api) -> None:
    user = await api.user(metadata={"big": 1.5e308, "huge": 123456789012345678901234567890})
    assert float(user["metadata"]["big"]) == 1.5e308  # jsonb writes it out in full, as an integer
    assert user["metadata"]["huge"] == 123456789012345678901234567890
