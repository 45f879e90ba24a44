"""Balance shapes (spec api.md §2.3, §6.4)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Amount, Balance, Currency, PrefixedId, Text


class BalanceSummary(BaseSchema):
    """The ``balance`` object embedded in a user."""

    available = Balance()
    reserved = Balance()
    total = fields.Method("_total", metadata={"type": "string"})
    currency = fields.Constant("USD")

    def _total(self, obj: Any) -> str:
        return Balance()._serialize(obj.available + obj.reserved, None, obj)


class BalanceOut(BalanceSummary):
    userId = fields.String(attribute="id")
    updatedAt = Time(attribute="balance_updated_at")


class AdjustBody(BaseSchema):
    """credit and debit."""

    amount = Amount(required=True)
    currency = Currency(load_default="USD")
    description = Text(max_length=500, load_default=None, allow_none=True)
    reference = Text(max_length=255, load_default=None, allow_none=True)


class ReservationBody(BaseSchema):
    """reserve, cancel-reservation and deduct-reserved: ``orderId`` (alias ``reference``)."""

    aliases = {"reference": "orderId"}

    amount = Amount(required=True)
    orderId = Text(required=True, min_length=1, max_length=255)
    currency = Currency(load_default="USD")
    description = Text(max_length=500, load_default=None, allow_none=True)


class ReleaseBody(ReservationBody):
    """release: the buyer's reserved funds go to ``sellerId`` (alias ``recipientId``)."""

    aliases = {"reference": "orderId", "recipientId": "sellerId"}

    sellerId = PrefixedId("user", required=True)


#: Built once: schema construction is the expensive part of a dump.
BALANCE_SUMMARY = BalanceSummary()
BALANCE_OUT = BalanceOut()

ADMIN_BODIES: dict[str, type[BaseSchema]] = {
    "credit": AdjustBody, "debit": AdjustBody, "reserve": ReservationBody,
    "cancel-reservation": ReservationBody, "deduct-reserved": ReservationBody, "release": ReleaseBody,
}
