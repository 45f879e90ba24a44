"""``from``/``to`` at the ends of the calendar: a 400 VALIDATION_ERROR, never a 500 (found probing the
statement and audit-log routes the contract test documents)."""

from __future__ import annotations

import pytest

from tests.api import Api

OUT_OF_RANGE = ["to=9999-12-31T23:59:59.999Z", "to=9999-12-31", "from=0001-01-01T00:00:00%2B14:00",
                "to=0001-01-01T00:00:00%2B01:00", "from=9999-12-31T12:00:00-10:00"]


@pytest.mark.parametrize("query", OUT_OF_RANGE)
async def test_an_instant_past_the_calendar_is_a_validation_error(api: Api, query: str) -> None:
    user = await api.user()
    for path in (f"/users/{user['id']}/statement?{query}", f"/audit/logs?{query}"):
        reply = await api.get(path)
        assert reply.status == 400, (path, reply.body)  # was: 500 (an OverflowError)
        [field] = reply.error["details"]["fields"]
        assert field["field"] == query.split("=", maxsplit=1)[0]
        assert field["code"] == "INVALID_FORMAT"


async def test_the_first_day_is_a_valid_start_and_reads_back_padded(api: Api) -> None:
    user = await api.user()
    reply = await api.get(f"/users/{user['id']}/statement?from=0001-01-01&to=9999-12-30")
    assert reply.status == 200, reply.body
    assert reply.data["from"] == "0001-01-01T00:00:00.000Z"  # was "1-01-01T…", not ISO 8601
