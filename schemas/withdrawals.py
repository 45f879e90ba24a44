"""Withdrawal shapes (spec api.md §2.10, §12)."""

from __future__ import annotations

from marshmallow import fields

from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Amount, Currency, Enum, PrefixedId, Text

DESTINATION_TYPES = ["crypto", "bank", "airtm_balance"]


class CreateWithdrawal(BaseSchema):
    aliases = {"user_id": "userId"}

    userId = PrefixedId("user", required=True)
    amount = Amount(required=True)
    currency = Currency(load_default="USD")
    destinationType = Enum(DESTINATION_TYPES, required=True)
    destinationRef = Text(required=True, min_length=1, max_length=255)
    commit = fields.Boolean(load_default=False)
    description = Text(max_length=500, load_default=None, allow_none=True)


class WithdrawalOut(BaseSchema):
    id = fields.String()
    userId = fields.String(attribute="user_id")
    amount = Amount()
    currency = fields.String()
    status = fields.String()
    destinationType = fields.String(attribute="destination_type")
    destinationRef = fields.String(attribute="destination_ref")
    committed = fields.Boolean()
    transactionHash = fields.String(attribute="transaction_hash", allow_none=True)
    airtmPayoutId = fields.String(attribute="airtm_payout_id", allow_none=True)
    fee = Amount(allow_none=True)
    failureReason = fields.String(attribute="failure_reason", allow_none=True)
    description = fields.String(allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")
    completedAt = Time(attribute="completed_at", allow_none=True)


WITHDRAWAL_OUT = WithdrawalOut()
