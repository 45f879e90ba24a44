"""Audit logs (spec api.md §15): newest first, filtered, cursor-paginated, read-only."""

from __future__ import annotations

from aiohttp import web

from orchestrator import ids
from orchestrator.db import audit as audit_db
from orchestrator.errors import ValidationFailed
from schemas.audit import AUDIT_ENTRY_OUT, AUDIT_FILTERS
from schemas.common import page_limit, period, reject_unknown
from web import render
from web.auth import requires
from web.keys import ENGINE
from web.responses import page


@requires("support")
async def list_audit_logs(request: web.Request) -> web.Response:
    query = request.query
    reject_unknown(query, AUDIT_FILTERS)
    for name in ("resourceType", "resourceId", "action", "userId"):
        if name in query and not 1 <= len(query[name]) <= 128:
            raise ValidationFailed.field(name, "INVALID_FORMAT", "must be 1-128 characters")
    if "userId" in query and not ids.is_valid("user", query["userId"]):
        raise ValidationFailed.field("userId", "INVALID_FORMAT", "must be a usr_ id")
    if "cursor" in query and not ids.is_valid("audit", query["cursor"]):
        raise ValidationFailed.field("cursor", "INVALID_CURSOR", "must be an aud_ id")
    since, until = period(query)
    limit, after = page_limit(query), await render.page_after(request, audit_db.cursor_of)
    async with request.app[ENGINE].connect() as conn:
        rows = (await conn.execute(audit_db.page(
            resource_type=query.get("resourceType"), resource_id=query.get("resourceId"),
            action=query.get("action"), user_id=query.get("userId"), since=since, until=until,
            after=after, limit=limit))).mappings().all()
    return page(request, [AUDIT_ENTRY_OUT.dump(r) for r in rows], limit=limit, ids=[r["id"] for r in rows])
