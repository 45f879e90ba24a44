"""Webhook endpoint and delivery shapes (DESIGN decision 28)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields

from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Enum, StrictInt, Text, _required_messages, fail
from schemas.queries import Page

DELIVERY_STATUSES = ["PENDING", "SUCCEEDED", "FAILED"]
#: A rotation's overlap: both secrets sign for this long (at most a week).
OVERLAP_MAX = 7 * 86400


class StrictBool(fields.Field):
    """A JSON ``true`` or ``false`` (never ``"true"`` or ``1``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, bool):
            raise fail("INVALID_TYPE", "must be a boolean")
        return value


class EventTypes(fields.Field):
    """Event types or ``family.*`` patterns; checked against the catalogue after loading."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(error_messages=_required_messages(), **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail("INVALID_TYPE", "must be an array of strings")
        if len(value) > 100:
            raise fail("TOO_LONG", "must name at most 100 event types", max=100)
        if any(not v or len(v) > 64 for v in value):
            raise fail("INVALID_FORMAT", "each event type must be 1-64 characters")
        return value


class CreateEndpoint(BaseSchema):
    url = Text(required=True, min_length=1, max_length=2048)
    description = Text(max_length=500, load_default=None, allow_none=True)
    eventTypes = EventTypes(load_default=list, metadata={
        "description": "event types or `family.*` from the catalogue; empty or `*` = every event"})
    enabled = StrictBool(load_default=True)


class UpdateEndpoint(BaseSchema):
    url = Text(min_length=1, max_length=2048)
    description = Text(max_length=500, allow_none=True)
    eventTypes = EventTypes()
    enabled = StrictBool()


class RotateSecret(BaseSchema):
    overlapSeconds = StrictInt(minimum=0, maximum=OVERLAP_MAX, load_default=86400)


class Replay(BaseSchema):
    since = Text(required=True, min_length=1, max_length=64, metadata={"description": "ISO 8601 instant"})
    until = Text(min_length=1, max_length=64, load_default=None, allow_none=True,
                 metadata={"description": "ISO 8601 instant (default: now)"})


class EndpointOut(BaseSchema):
    id = fields.String()
    url = fields.String()
    description = fields.String(allow_none=True)
    eventTypes = fields.List(fields.String(), attribute="event_types")
    enabled = fields.Boolean()
    disabledReason = fields.String(attribute="disabled_reason", allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")


class EndpointWithSecret(EndpointOut):
    secret = fields.String(metadata={"description": "`whsec_…`, shown only in the create and rotate answers"})


class AttemptOut(BaseSchema):
    attemptedAt = Time(attribute="attempted_at")
    statusCode = fields.Integer(attribute="status_code", allow_none=True)
    succeeded = fields.Boolean()
    latencyMs = fields.Integer(attribute="latency_ms")
    error = fields.String(allow_none=True)
    responseExcerpt = fields.String(attribute="response_excerpt", allow_none=True)
    nextAttemptAt = Time(attribute="next_attempt_at", allow_none=True)


class DeliveryOut(BaseSchema):
    id = fields.String()
    endpointId = fields.String(attribute="endpoint_id")
    eventId = fields.String(attribute="event_id")
    eventType = fields.String(attribute="event_type")
    position = fields.Integer(allow_none=True)
    status = Enum(DELIVERY_STATUSES)
    attemptCount = fields.Integer(attribute="attempts")
    nextAttemptAt = Time(attribute="next_attempt_at", allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")
    attempts = fields.List(fields.Nested(AttemptOut), attribute="attempt_rows")


class ReplayOut(BaseSchema):
    endpointId = fields.String()
    requeued = fields.Integer()
    created = fields.Integer()


class ListDeliveries(Page):
    status = Enum(DELIVERY_STATUSES)


ENDPOINT_OUT = EndpointOut()
DELIVERY_OUT = DeliveryOut()
