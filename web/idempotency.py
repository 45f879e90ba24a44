"""``Idempotency-Key`` handling around every authenticated POST and DELETE (spec api.md §1.10)."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from aiohttp import web

from orchestrator.db import idempotency as idempotency_db
from orchestrator.errors import Conflict, OrchestratorError, ValidationFailed
from orchestrator.events import now
from web import enqueue
from web.auth import Handler, request_credential
from web.errors import error_response
from web.keys import ENGINE, SETTINGS
from web.request_state import BODY, CREDENTIAL, IDEMPOTENCY
from web.responses import json_bytes

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE)
#: Secrets shown once are never written to the idempotency table; a replay shows them masked.
SECRET_FIELDS = ("key", "token", "secret")
MASK = "***REDACTED***"


def fingerprint(request: web.Request) -> str:
    canonical = json.dumps(request.get(BODY) or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{request.method}\n{request.path}\n{canonical}".encode()).hexdigest()


@web.middleware
async def idempotency(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.headers.get("Idempotency-Key")
    if key is None or request.method not in ("POST", "DELETE") or request.get(CREDENTIAL) is None:
        return await handler(request)
    if not UUID4.fullmatch(key):
        raise ValidationFailed("Idempotency-Key must be a UUID v4", details={
            "header": "Idempotency-Key",
            "fields": [{"field": "Idempotency-Key", "code": "INVALID_FORMAT", "message": "must be a UUID v4"}]})
    scope, key = request_credential(request).key_id, key.lower()
    print_ = fingerprint(request)
    async with request.app[ENGINE].begin() as conn:
        won = (await conn.execute(idempotency_db.claim(scope, key, print_))).first()
    if not won:
        response = await _existing(request, handler, scope, key, print_)
    else:
        request[IDEMPOTENCY] = (scope, key)
        try:
            response = await handler(request)
        except OrchestratorError as error:
            response = error_response(error)
        except BaseException:
            await _execute(request, idempotency_db.release(scope, key))
            raise
        await _store(request, scope, key, response)
    response.headers["X-Idempotency-Key"] = key
    return response


async def _existing(request: web.Request, handler: Handler, scope: str, key: str,
                    print_: str) -> web.StreamResponse:
    async with request.app[ENGINE].connect() as conn:
        row = (await conn.execute(idempotency_db.get(scope, key))).first()
    if row is None:  # released between our claim and this read: run as a fresh request
        return await idempotency(request, handler)
    record = idempotency_db.to_record(row)
    if record.fingerprint != print_:
        raise Conflict("This Idempotency-Key was used with a different request", code="IDEMPOTENCY_KEY_REUSED",
                       details={"idempotencyKey": key})
    if record.state == "DONE":
        return _replay(record.response_status or 200, record.response_body or {})
    abandoned = (now() - record.created_at).total_seconds() > request.app[SETTINGS].command_wait_seconds + 30
    in_progress = Conflict("The first request with this Idempotency-Key is still executing",
                           code="IDEMPOTENCY_KEY_IN_PROGRESS", details={"idempotencyKey": key})
    if record.command_id is None:
        if record.state == "IN_PROGRESS" and not abandoned:
            raise in_progress
        await _execute(request, idempotency_db.release(scope, key))
        return await idempotency(request, handler)
    # the operation is its command: once that finished, its outcome is the answer (a first request that
    # failed after recording it, e.g. on a dropped database connection, left the record in progress)
    state = await enqueue.read(request.app, record.command_id)
    if not state.finished:
        if record.state == "IN_PROGRESS" and not abandoned:
            raise in_progress
        body = record.response_body or {"data": None, "meta": {"commandId": record.command_id, "pending": True}}
        return _replay(202, body)
    try:
        response = await enqueue.respond(request, state)
    except OrchestratorError as error:
        response = error_response(error)
    await _store(request, scope, key, response)
    response.headers["Idempotency-Replay"] = "true"
    return response


async def _store(request: web.Request, scope: str, key: str, response: web.StreamResponse) -> None:
    status = response.status
    if status >= 500 or status in (401, 403) or not isinstance(response, web.Response):
        await _execute(request, idempotency_db.release(scope, key))
        return
    body = json.loads(response.text or "{}")
    if isinstance(body.get("data"), dict):
        body["data"] = {k: MASK if k in SECRET_FIELDS else v for k, v in body["data"].items()}
    state = "ACCEPTED" if status == 202 else "DONE"
    await _execute(request, idempotency_db.complete(scope, key, state=state, status=status, body=body))


def _replay(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json_bytes(body), content_type="application/json",
                        charset="utf-8", headers={"Idempotency-Replay": "true"})


async def _execute(request: web.Request, statement: Any) -> None:
    async with request.app[ENGINE].begin() as conn:
        await conn.execute(statement)
