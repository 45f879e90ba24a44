"""Top-up redirect URLs that urlsplit cannot take apart, or that name no host, are 400 INVALID_URL, not 500."""

from __future__ import annotations

import pytest

from tests.api import Api


@pytest.mark.parametrize("url", ["https://[::1", "https://[x]/", "http://localhost:99999/", "https://a:b@/",
                                 "https://exa mple.com"])
async def test_a_broken_url_is_refused_before_anything_else(api: Api, url: str) -> None:
    user = await api.user()
    reply = await api.post("/topups", {"userId": user["id"], "amount": "10.00", "returnUrl": url})
    assert reply.status == 400, reply.body  # the first two were: 500 (ValueError from urlsplit)
    assert reply.error["details"]["fields"] == [
        {"field": "returnUrl", "code": "INVALID_URL",
         "message": "must be an absolute https URL (http only for localhost)"}]
