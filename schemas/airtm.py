"""AirTM request and response shapes: the link (api.md §5.4) and top-ups (§2.9, §8)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from marshmallow import fields

from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Amount, Currency, Email, JsonObject, PrefixedId, Text, fail


class LinkAirtm(BaseSchema):
    email = Email(required=True)


class RedirectUrl(Text):
    """An absolute ``https`` URL, or ``http`` for ``localhost``/``127.0.0.1`` (api.md §8.1)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=2000, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kw: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kw)
        parts = urlsplit(text)
        local = parts.hostname in ("localhost", "127.0.0.1")
        if not parts.netloc or not (parts.scheme == "https" or (parts.scheme == "http" and local)):
            raise fail("INVALID_URL", "must be an absolute https URL (http only for localhost)")
        return text


class CreateTopUp(BaseSchema):
    aliases = {"user_id": "userId", "return_url": "returnUrl", "cancel_url": "cancelUrl"}

    userId = PrefixedId("user", required=True)
    amount = Amount(required=True)
    currency = Currency(load_default="USD")
    returnUrl = RedirectUrl(load_default=None, allow_none=True)
    cancelUrl = RedirectUrl(load_default=None, allow_none=True)
    description = Text(max_length=500, load_default=None, allow_none=True)
    metadata = JsonObject(load_default=None, allow_none=True)


class TopUpOut(BaseSchema):
    id = fields.String()
    userId = fields.String(attribute="user_id")
    amount = Amount()
    currency = fields.String()
    status = fields.String()
    confirmationUri = fields.String(attribute="confirmation_uri", allow_none=True)
    confirmationUriAlias = fields.Function(lambda topup: topup.confirmation_uri, data_key="confirmation_uri")
    returnUrl = fields.String(attribute="return_url")
    cancelUrl = fields.String(attribute="cancel_url")
    airtmPayinId = fields.String(attribute="airtm_payin_id", allow_none=True)
    expiresAt = Time(attribute="expires_at", allow_none=True)
    failureReason = fields.String(attribute="failure_reason", allow_none=True)
    description = fields.String(allow_none=True)
    metadata = fields.Raw(allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")


TOPUP_OUT = TopUpOut()
