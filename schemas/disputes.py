"""Dispute shapes (spec api.md §2.8, §10.3, §11)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validates_schema

from orchestrator.escrow.disputes import DECISIONS, OPENED_BY, REASONS
from schemas.base import BaseSchema, Problem
from schemas.common import Time
from schemas.fields import Amount, Enum, PrefixedId, Text, fail


class Evidence(fields.List):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and len(value) > 20:
            raise fail("TOO_LONG", "at most 20 items", max=20)
        return super()._deserialize(value, attr, data, **kwargs)


class OpenDispute(BaseSchema):
    openedBy = Enum(OPENED_BY, required=True)
    reason = Enum(REASONS, required=True)
    evidence = Evidence(Text(min_length=1, max_length=2048), load_default=None, allow_none=True)
    orderId = PrefixedId("order", load_default=None, allow_none=True)


class AssignDispute(BaseSchema):
    aliases = {"agentId": "assignedTo"}

    assignedTo = Text(required=True, min_length=1, max_length=255)
    notes = Text(max_length=2000, load_default=None, allow_none=True)


class ResolveDispute(BaseSchema):
    aliases = {"decisionNote": "note"}

    decision = Enum(DECISIONS, required=True)
    releaseAmount = Amount(load_default=None, allow_none=True)
    refundAmount = Amount(load_default=None, allow_none=True)
    note = Text(max_length=2000, load_default=None, allow_none=True)
    resolvedBy = Text(max_length=255, load_default=None, allow_none=True)

    @validates_schema
    def _amounts(self, data: dict[str, Any], **_: Any) -> None:
        given = [name for name in ("releaseAmount", "refundAmount") if data.get(name) is not None]
        if data.get("decision") == "SPLIT":
            missing = {name: [Problem("MISSING_REQUIRED_FIELD", "required for SPLIT")]
                       for name in ("releaseAmount", "refundAmount") if name not in given}
            if missing:
                raise ValidationError(missing)
        elif given:
            raise ValidationError({name: [Problem("FORBIDDEN_FOR_DECISION", "only a SPLIT takes amounts")]
                                   for name in given})


class DisputeOut(BaseSchema):
    id = fields.String()
    orderId = fields.String(attribute="order_id")
    openedBy = fields.String(attribute="opened_by")
    reason = fields.String()
    evidence = fields.List(fields.String())
    status = fields.String()
    assignedTo = fields.String(attribute="assigned_to", allow_none=True)
    assignmentNotes = fields.String(attribute="assignment_notes", allow_none=True)
    resolutionDecision = fields.String(attribute="resolution_decision", allow_none=True)
    releaseAmount = Amount(attribute="release_amount", allow_none=True)
    refundAmount = Amount(attribute="refund_amount", allow_none=True)
    decisionNote = fields.String(attribute="decision_note", allow_none=True)
    resolvedBy = fields.String(attribute="resolved_by", allow_none=True)
    resolvedAt = Time(attribute="resolved_at", allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")


DISPUTE_OUT = DisputeOut()
DISPUTE_FILTERS = {"status": ["OPEN", "UNDER_REVIEW", "RESOLVED"], "openedBy": list(OPENED_BY)}
