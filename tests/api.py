"""HTTP helpers for tests that drive the API as a marketplace would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from orchestrator import ids


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def data(self) -> Any:
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


class Api:
    """Calls ``/api/v1`` with a credential (the master key unless another is given)."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client, self.credential = client, key

    def as_(self, key: str) -> Api:
        return Api(self.client, key)

    async def call(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
                   key: str | None = None, **kwargs: Any) -> Reply:
        sent = {"Authorization": f"Bearer {key or self.credential}", **(headers or {})}
        async with self.client.request(method, f"/api/v1{path}", json=json, headers=sent, **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return Reply(resp.status, body, resp.headers)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Reply:
        return await self.call("POST", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)

    async def user(self, **fields: Any) -> dict[str, Any]:
        """A new user with a unique external id."""
        reply = await self.post("/users", {"externalUserId": unique("ext"), **fields})
        assert reply.status == 201, reply.body
        return reply.data

    async def funded_user(self, amount: str) -> dict[str, Any]:
        user = await self.user()
        reply = await self.post(f"/users/{user['id']}/balance/credit", {"amount": amount})
        assert reply.status == 200, reply.body
        return user

    async def balance(self, user_id: str) -> dict[str, Any]:
        reply = await self.get(f"/users/{user_id}/balance")
        assert reply.status == 200, reply.body
        return reply.data

    async def key(self, *scopes: str) -> str:
        """The plaintext of a new API key holding ``scopes``."""
        reply = await self.post("/auth/api-keys", {"name": unique("key"), "scopes": list(scopes)})
        assert reply.status == 201, reply.body
        return reply.data["key"]


def unique(prefix: str) -> str:
    return f"{prefix}-{ids.new_id('command')[4:16]}"


def idempotency_key() -> str:
    return str(uuid.uuid4())
