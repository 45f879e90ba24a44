"""API keys, tokens and the current credential (spec api.md §4)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from orchestrator.accounts import api_keys
from orchestrator.commands import Kind
from orchestrator.db import api_keys as keys_db
from orchestrator.errors import Forbidden
from orchestrator.events import iso
from schemas import queries, views
from schemas.api_keys import KEY_OUT, CreateKey, KeyOut, MintToken
from schemas.base import BaseSchema, NoBody, load
from schemas.common import check_enums, page_limit, reject_unknown
from web import audit, enqueue, render
from web.apidoc import doc
from web.auth import Credential, check_scope, request_credential, requires
from web.keys import ENGINE, SETTINGS
from web.request_state import BODY
from web.responses import envelope, page


@doc("Create an API key; its secret (`key`) is shown only here", body=CreateKey, response=views.CreatedKey,
     status=201, command=True, accepted=(views.PendingKey,),
     example={"name": "My Marketplace", "scopes": ["read", "write"]})
@requires(None)
async def create_key(request: web.Request) -> web.Response:
    credential = request_credential(request)
    if credential.type != "master":
        check_scope(credential, "support")
    body = load(CreateKey, request[BODY])
    if credential.type != "master":
        for scope in body["scopes"]:
            check_scope(credential, scope)
    key = api_keys.generate(live=request.app[SETTINGS].is_mainnet)
    state = await enqueue.run(request, Kind.CREATE_API_KEY, {
        "id": key.id, "name": body["name"], "scopes": body["scopes"], "userId": body["userId"],
        "salt": key.salt, "keyHash": key.key_hash, "maskedKey": key.masked})
    return await enqueue.respond(request, state, extra={"key": key.plaintext})


@doc("List API keys (never their secrets)", query=queries.ListKeys, response=KeyOut, many=True,
     paginated=True)
@requires("support")
async def list_keys(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, {"userId", "status", "limit", "cursor"})
    check_enums(query, {"status": ["ACTIVE", "REVOKED"]})
    limit, after = page_limit(query), await render.page_after(request, keys_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(keys_db.page(owner_label=query.get("userId"), status=query.get("status"),
                                                after=after, limit=limit))).all()
    found = [keys_db.to_key(r) for r in rows]
    return page(request, [KEY_OUT.dump(k) for k in found], limit=limit, ids=[k.id for k in found])


@doc("Revoke an API key and every token minted from it", body=NoBody, response=KeyOut, command=True,
     errors=("API_KEY_NOT_FOUND",))
@requires("support")
async def revoke_key(request: web.Request) -> web.Response:
    key_id = _key_id(request)
    load(BaseSchema, request[BODY])  # no body fields: any field sent is unknown
    state = await enqueue.run(request, Kind.REVOKE_API_KEY, {"keyId": key_id})
    return await enqueue.respond(request, state)


@doc("Mint a short-lived token for a key", body=MintToken, response=views.Token, status=201,
     errors=("API_KEY_NOT_FOUND", "INVALID_STATE_TRANSITION"), example={"ttl": 3600, "scopes": ["read"]})
@requires(None)
async def mint_token(request: web.Request) -> web.Response:
    """A short-lived token for the key itself, the master key, or support (no stored state changes)."""
    credential, key_id = request_credential(request), _key_id(request)
    if credential.key_id != key_id and credential.type != "master":
        check_scope(credential, "support")
    body = load(MintToken, request[BODY])
    row = await render.fetch_one(request, keys_db.by_id(key_id))
    key = api_keys.ensure_active(keys_db.to_key(row) if row else None, key_id)
    scopes = body["scopes"] or key.scopes
    lacking = [s for s in scopes if not api_keys.holds(key.scopes, s)]
    if lacking:
        raise Forbidden("A token cannot carry scopes its key does not hold",
                        details={"requiredScope": lacking[0], "currentScopes": list(key.scopes)})
    token, expires = api_keys.mint_token(request.app[SETTINGS].jwt_secret, key_id=key.id, scopes=scopes,
                                         ttl=body["ttl"])
    await audit.record(request, "api_key.token_minted", "ApiKey", key.id,
                       after={"scopes": list(scopes), "ttl": body["ttl"], "expiresAt": iso(_from_unix(expires))})
    return envelope(request, {"token": token, "keyId": key.id, "scopes": scopes,
                              "expiresAt": iso(_from_unix(expires))}, status=201)


@doc("The calling credential and its scopes", response=views.Me)
@requires(None)
async def me(request: web.Request) -> web.Response:
    credential: Credential = request_credential(request)
    return envelope(request, {
        "type": credential.type, "apiKeyId": credential.key_id, "apiKeyName": credential.key_name,
        "scopes": list(credential.scopes),
        "expiresAt": iso(_from_unix(credential.expires_at)) if credential.expires_at else None})


def _key_id(request: web.Request) -> str:
    return render.path_id(request, "key_id", "api_key", "API_KEY_NOT_FOUND", "API key")


def _from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
