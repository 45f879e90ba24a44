"""Audit entries for acts the web tier completes itself (token minting, balance sync), with the caller as actor.

Entries written here are chained by the scheduler's relay pass (the web tier runs no relay of its own).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from orchestrator import audit
from orchestrator.db import audit as audit_db
from web.auth import request_credential
from web.keys import ENGINE
from web.request_state import IDEMPOTENCY, REQUEST_ID


async def record(request: web.Request, action: str, resource_type: str, resource_id: str | None, *,
                 user_id: str | None = None, after: dict[str, Any] | None = None, result: str = "SUCCESS",
                 error: dict[str, Any] | None = None) -> str:
    """One entry, committed on its own (the act it records changes no stored state)."""
    credential = request_credential(request)
    idempotency = request.get(IDEMPOTENCY)
    row = audit.values(action=action, resource_type=resource_type, resource_id=resource_id, user_id=user_id,
                       actor=audit.Actor(credential.actor_type, credential.key_id), after=after, result=result,
                       error=error, idempotency_key=idempotency[1] if idempotency else None,
                       correlation_id=request[REQUEST_ID], request_id=request[REQUEST_ID])
    async with request.app[ENGINE].connect() as conn:  # autocommit: a single statement
        await conn.execute(audit_db.insert_statement(**row))
    return str(row["id"])
