"""Audit log entries (spec api.md §2.11, §15)."""

from __future__ import annotations

from marshmallow import fields

from schemas.base import BaseSchema
from schemas.common import Time

#: The query parameters ``GET /audit/logs`` accepts (anything else: 400 UNKNOWN_FIELD).
AUDIT_FILTERS = {"resourceType", "resourceId", "action", "userId", "from", "to", "limit", "cursor"}


class AuditLogEntryOut(BaseSchema):
    id = fields.String()
    occurredAt = Time(attribute="occurred_at")
    action = fields.String()
    resourceType = fields.String(attribute="resource_type")
    resourceId = fields.String(attribute="resource_id", allow_none=True)
    userId = fields.String(attribute="user_id", allow_none=True)
    payloadBefore = fields.Raw(attribute="payload_before", allow_none=True)
    payloadAfter = fields.Raw(attribute="payload_after", allow_none=True)
    actorType = fields.String(attribute="actor_type")
    actorId = fields.String(attribute="actor_id", allow_none=True)
    result = fields.String()
    error = fields.Raw(allow_none=True)
    idempotencyKey = fields.String(attribute="idempotency_key", allow_none=True)
    correlationId = fields.String(attribute="correlation_id", allow_none=True)
    requestId = fields.String(attribute="request_id", allow_none=True)
    position = fields.Integer(allow_none=True)  # its place in the hash chain (null until chained)
    entryHash = fields.String(attribute="entry_hash", allow_none=True)


AUDIT_ENTRY_OUT = AuditLogEntryOut()
