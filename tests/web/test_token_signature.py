"""A forged short-lived token is a 401 whatever characters its signature holds, never a 500."""

from __future__ import annotations

import pytest

from tests.api import Api


@pytest.mark.parametrize("credential", ["ohk_tok_abc.\xe9", "ohk_tok_e30.\xff\xfe", "ohk_tok_\xe9.\xe9"])
async def test_a_token_with_a_non_ascii_signature_is_an_invalid_key(api: Api, credential: str) -> None:
    async with api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {credential}"}) as resp:
        body = await resp.json()
    assert resp.status == 401, body  # was: 500 (hmac.compare_digest on non-ASCII str raises TypeError)
    assert body["error"]["code"] == "INVALID_API_KEY"
