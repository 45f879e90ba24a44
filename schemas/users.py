"""User request and response shapes (spec api.md §2.2, §5)."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from orchestrator.accounts.users import UserStatus, UserType
from schemas.balances import BALANCE_SUMMARY
from schemas.base import BaseSchema
from schemas.common import Time
from schemas.fields import Email, Enum, JsonObject, Text


class CreateUser(BaseSchema):
    aliases = {"external_user_id": "externalUserId"}

    externalUserId = Text(required=True, min_length=1, max_length=255)
    email = Email(load_default=None, allow_none=True)
    type = Enum(list(UserType), load_default=UserType.BOTH.value)
    metadata = JsonObject(load_default=None, allow_none=True)


class UserOut(BaseSchema):
    id = fields.String()
    externalUserId = fields.String(attribute="external_user_id")
    email = fields.String(allow_none=True)
    type = fields.String()
    status = fields.String()
    backing = fields.String(metadata={"enum": ["WALLET", "AIRTM"], "description": (
        "What the balance is a claim on, fixed at creation by the payment provider then in force: the user's "
        "own Stellar wallet, or the marketplace's AirTM enterprise account. Deposits and withdrawals follow it.")})
    balance = fields.Method("_balance", metadata={"openapi": "BalanceSummary"})
    airtmLinked = fields.Method("_linked", metadata={"type": "boolean"})
    airtmUserId = fields.String(attribute="airtm_user_id", allow_none=True)
    airtmLinkedAt = Time(attribute="airtm_linked_at", allow_none=True)
    metadata = fields.Raw(allow_none=True, metadata={"type": "object"})
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")

    def _balance(self, user: Any) -> dict[str, Any]:
        return BALANCE_SUMMARY.dump(user)

    def _linked(self, user: Any) -> bool:
        return user.airtm_user_id is not None


USER_FILTERS = {"type": list(UserType), "status": list(UserStatus)}

#: Schemas are stateless once built; building one per request cost more than the dump itself.
USER_OUT = UserOut()
