"""API key and token shapes (spec api.md §2.1, §4)."""

from __future__ import annotations

from marshmallow import fields

from orchestrator.accounts.api_keys import SCOPES
from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Scopes, StrictInt, Text


class CreateKey(BaseSchema):
    name = Text(required=True, min_length=1, max_length=100)
    scopes = Scopes(SCOPES, required=True)
    userId = Text(max_length=255, load_default=None, allow_none=True)


class MintToken(BaseSchema):
    ttl = StrictInt(minimum=60, maximum=86400, load_default=3600)
    scopes = Scopes(SCOPES, load_default=None, allow_none=True)


class KeyOut(BaseSchema):
    id = fields.String()
    name = fields.String()
    scopes = fields.List(fields.String())
    userId = fields.String(attribute="owner_label", allow_none=True)
    maskedKey = fields.String(attribute="masked_key")
    status = fields.String()
    lastUsedAt = Time(attribute="last_used_at", allow_none=True)
    createdAt = Time(attribute="created_at")
    revokedAt = Time(attribute="revoked_at", allow_none=True)


KEY_OUT = KeyOut()
