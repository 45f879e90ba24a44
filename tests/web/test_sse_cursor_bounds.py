"""A replay cursor that is no position PostgreSQL can hold is a 400, not a 500 or a broken stream."""

from __future__ import annotations

import pytest

from tests.api import Api


@pytest.mark.parametrize("cursor", ["²", "٣", "99999999999999999999999", "9223372036854775808"])
async def test_a_cursor_that_is_no_position_is_refused(api: Api, cursor: str) -> None:
    for where in ({"params": {"since": cursor}}, {"headers": {"Last-Event-ID": cursor}}):
        headers = {"Authorization": f"Bearer {api.credential}", **where.get("headers", {})}
        async with api.client.get("/api/v1/events", params=where.get("params"), headers=headers) as resp:
            body = await resp.json()
        assert resp.status == 400, (cursor, body)  # "²" was a 500: str.isdigit() took it, int() did not
        assert body["error"]["details"]["fields"][0]["code"] == "INVALID_FORMAT"
