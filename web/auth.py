"""Credentials (master key, API keys, short-lived tokens) and route scopes (spec api.md §1.9)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from psycopg_pool import AsyncConnectionPool

from orchestrator.accounts import api_keys
from orchestrator.db import api_keys as keys_db
from orchestrator.db import prepared
from orchestrator.errors import Forbidden, Unauthorized
from orchestrator.settings import Settings
from web.request_state import CREDENTIAL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: How long a verified key stays cached; revocations also evict at once through LISTEN.
CACHE_SECONDS = 2.0


@dataclass(frozen=True)
class Credential:
    """Who is calling: ``type`` is master, api_key or token; ``key_id`` is ``master`` for the master key."""

    type: str
    key_id: str
    key_name: str
    scopes: tuple[str, ...]
    expires_at: int | None = None

    @property
    def actor_type(self) -> str:
        return "MASTER" if self.type == "master" else "SUPPORT" if "support" in self.scopes else "USER"

    def holds(self, scope: str) -> bool:
        return api_keys.holds(self.scopes, scope)


class KeyCache:
    """Verified key rows for a couple of seconds, so authentication is not a query per request."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, keys_db.ApiKey]] = {}

    def get(self, key_id: str) -> keys_db.ApiKey | None:
        hit = self.entries.get(key_id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def put(self, key: keys_db.ApiKey) -> None:
        self.entries[key.id] = (time.monotonic() + CACHE_SECONDS, key)

    def evict(self, key_id: str) -> None:
        """Drop one key, or everything when ``key_id`` is empty (after a LISTEN reconnect)."""
        if key_id:
            self.entries.pop(key_id, None)
        else:
            self.entries.clear()


def requires(scope: str | None) -> Callable[[Handler], Handler]:
    """Declare a route's scope (``None``: any valid credential); the auth middleware enforces it."""
    def mark(handler: Handler) -> Handler:
        handler.required_scope = scope  # type: ignore[attr-defined]
        return handler
    return mark


def public(handler: Handler) -> Handler:
    """Declare a route that needs no credential."""
    handler.public = True  # type: ignore[attr-defined]
    return handler


def check_scope(credential: Credential, scope: str | None) -> None:
    if scope is not None and not credential.holds(scope):
        raise Forbidden(f"This operation requires the {scope} scope",
                        details={"requiredScope": scope, "currentScopes": list(credential.scopes)})


async def authenticate(header: str | None, *, settings: Settings, reads: AsyncConnectionPool,
                       cache: KeyCache) -> Credential:
    """The credential named by an ``Authorization`` header, or ``Unauthorized``."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise Unauthorized()
    if hmac.compare_digest(value.encode(), settings.master_key.encode()):
        return Credential("master", "master", "master", ("*",))
    if value.startswith(api_keys.TOKEN_PREFIX):
        return await _token(value, settings=settings, reads=reads, cache=cache)
    match = api_keys.KEY_PATTERN.fullmatch(value)
    if not match or (match.group(1) == "live") != settings.is_mainnet:
        raise _invalid()
    key = await _load(match.group(2), reads, cache)
    if key is None or key.status != "ACTIVE" or not api_keys.matches(key, value):
        raise _invalid()
    return Credential("api_key", key.id, key.name, tuple(key.scopes))


async def _token(value: str, *, settings: Settings, reads: AsyncConnectionPool, cache: KeyCache) -> Credential:
    payload = api_keys.read_token(settings.jwt_secret, value)
    if payload is None:
        raise _invalid()
    key = await _load(str(payload["sub"]), reads, cache)
    if key is None or key.status != "ACTIVE":
        raise _invalid()
    scopes = tuple(s for s in payload.get("scopes", []) if s in key.scopes or "*" in key.scopes)
    return Credential("token", key.id, key.name, scopes, int(payload["exp"]))


async def _load(key_id: str, reads: AsyncConnectionPool, cache: KeyCache) -> keys_db.ApiKey | None:
    key = cache.get(key_id)
    if key is None:
        row = await prepared.fetch_one(reads, keys_db.BY_ID, key_id=key_id)
        if row is None:
            return None
        key = keys_db.to_key(row)
        cache.put(key)
    return key


def _invalid() -> Unauthorized:
    return Unauthorized("The credential is unknown, revoked or expired", code="INVALID_API_KEY")


def request_credential(request: web.Request) -> Credential:
    credential: Any = request.get(CREDENTIAL)
    if credential is None:
        raise Unauthorized()
    return credential
