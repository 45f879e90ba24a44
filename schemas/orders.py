"""Order and milestone shapes (spec api.md §2.5, §2.7, §9)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validates_schema

from orchestrator.escrow.orders import Status
from schemas.base import BaseSchema, Problem
from schemas.common import Time
from schemas.fields import Amount, Currency, JsonObject, PrefixedId, Text, fail

#: How the OpenAPI document shows a settlement figure: a decimal string, null before settlement.
_SETTLED_AMOUNT = {"type": ["string", "null"]}


class MilestoneIn(BaseSchema):
    aliases = {"milestone_ref": "milestoneRef", "ref": "milestoneRef", "description": "title"}

    milestoneRef = Text(required=True, min_length=1, max_length=100)
    title = Text(required=True, min_length=1, max_length=255)
    amount = Amount(required=True)


class Milestones(fields.List):
    """Between 1 and 50 milestones."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list) and not 1 <= len(value) <= 50:
            raise fail("TOO_SHORT" if not value else "TOO_LONG", "must hold 1 to 50 milestones", min=1, max=50)
        return super()._deserialize(value, attr, data, **kwargs)


class CreateOrder(BaseSchema):
    aliases = {"buyer_id": "buyerId", "seller_id": "sellerId", "client_order_ref": "clientOrderRef"}

    buyerId = PrefixedId("user", required=True)
    sellerId = PrefixedId("user", required=True)
    amount = Amount(required=True)
    currency = Currency(load_default="USD")
    title = Text(required=True, min_length=1, max_length=255)
    description = Text(max_length=2000, load_default=None, allow_none=True)
    clientOrderRef = Text(min_length=1, max_length=100, load_default=None, allow_none=True)
    milestones = Milestones(fields.Nested(MilestoneIn), load_default=None, allow_none=True)
    metadata = JsonObject(load_default=None, allow_none=True)

    @validates_schema
    def _rules(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, list[Problem]] = {}
        if data.get("buyerId") and data.get("buyerId") == data.get("sellerId"):
            errors["sellerId"] = [Problem("SAME_USER", "the seller must differ from the buyer")]
        milestones = data.get("milestones") or []
        refs = [m["milestoneRef"] for m in milestones]
        if len(set(refs)) != len(refs):
            errors["milestones"] = [Problem("DUPLICATE_MILESTONE_REF", "milestone refs must be unique")]
        elif milestones and sum(m["amount"] for m in milestones) != data.get("amount"):
            errors["milestones"] = [Problem("MILESTONE_SUM_MISMATCH", "milestone amounts must sum to the amount")]
        if errors:
            raise ValidationError(errors)


class ReserveBody(BaseSchema):
    amount = Amount(load_default=None, allow_none=True)


class CancelBody(BaseSchema):
    reason = Text(max_length=500, load_default=None, allow_none=True)
    canceledBy = Text(max_length=100, load_default=None, allow_none=True)


class ReleaseBody(BaseSchema):
    requestedBy = Text(max_length=255, load_default=None, allow_none=True)
    reason = Text(max_length=500, load_default=None, allow_none=True)


class RefundBody(BaseSchema):
    requestedBy = Text(max_length=255, load_default=None, allow_none=True)
    reason = Text(required=True, min_length=1, max_length=500)


class MilestoneOut(BaseSchema):
    id = fields.String()
    orderId = fields.String(attribute="order_id")
    milestoneRef = fields.String(attribute="milestone_ref")
    title = fields.String()
    amount = Amount()
    status = fields.String()
    completedAt = Time(attribute="completed_at", allow_none=True)
    createdAt = Time(attribute="created_at")


class EscrowOut(BaseSchema):
    id = fields.String()
    orderId = fields.String(attribute="order_id")
    trustlessContractId = fields.String(attribute="trustless_contract_id", allow_none=True)
    status = fields.String()
    amount = Amount()
    currency = fields.Constant("USD")
    fundingMode = fields.String(attribute="funding_mode", metadata={"enum": ["WALLET", "TREASURY"], "description": (
        "Who funds the escrow: the buyer's own wallet, or the platform treasury standing in for an AirTM-backed "
        "buyer (the book moves the users' balances the same way)")})
    fundedAt = Time(attribute="funded_at", allow_none=True)
    releasedAt = Time(attribute="released_at", allow_none=True)
    refundedAt = Time(attribute="refunded_at", allow_none=True)
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")


class OrderOut(BaseSchema):
    id = fields.String()
    clientOrderRef = fields.String(attribute="client_order_ref", allow_none=True)
    buyerId = fields.String(attribute="buyer_id")
    sellerId = fields.String(attribute="seller_id")
    amount = Amount()
    currency = fields.String()
    status = fields.String()
    finalStatus = fields.String(attribute="final_status", allow_none=True)
    fundingMode = fields.String(attribute="funding_mode", metadata={"enum": ["WALLET", "TREASURY"], "description": (
        "Who funds the escrow: the buyer's own wallet, or the platform treasury standing in for an AirTM-backed "
        "buyer (the book moves the users' balances the same way)")})
    title = fields.String()
    description = fields.String(allow_none=True)
    metadata = fields.Raw(allow_none=True, metadata={"type": "object"})
    escrow = fields.Constant(None)
    dispute = fields.Constant(None)
    # DESIGN decision 1: what the contract actually paid, once settled (null before)
    grossAmount = fields.Method("_gross", metadata=_SETTLED_AMOUNT)
    trustlessFee = fields.Method("_trustless_fee", metadata=_SETTLED_AMOUNT)
    platformFee = fields.Method("_platform_fee", metadata=_SETTLED_AMOUNT)
    netAmount = fields.Method("_net", metadata=_SETTLED_AMOUNT)
    distributions = fields.Method("_distributions", metadata={"type": ["array", "null"]})

    def _settled(self, order: Any, key: str) -> Any:
        """``key`` of the settlement, of an ``Order`` or of a result row (a mapping: order reads render their
        rows as they come, and five fields ask; a row's attribute access goes through ``__getattr__``)."""
        settlement = order["settlement"] if isinstance(order, dict) else order.settlement
        return (settlement or {}).get(key)

    def _gross(self, order: Any) -> Any:
        return self._settled(order, "grossAmount")

    def _trustless_fee(self, order: Any) -> Any:
        return self._settled(order, "trustlessFee")

    def _platform_fee(self, order: Any) -> Any:
        return self._settled(order, "platformFee")

    def _net(self, order: Any) -> Any:
        return self._settled(order, "netAmount")

    def _distributions(self, order: Any) -> Any:
        return self._settled(order, "distributions")
    createdAt = Time(attribute="created_at")
    updatedAt = Time(attribute="updated_at")
    closedAt = Time(attribute="closed_at", allow_none=True)


ORDER_OUT = OrderOut()
ESCROW_OUT = EscrowOut()
MILESTONE_OUT = MilestoneOut()
ORDER_STATUSES = [str(s) for s in Status]
