"""Query strings of the read endpoints, as the OpenAPI document (web/openapi.py) declares them.

The handlers check their queries with ``schemas.common`` (unknown names, enums, ``limit``, cursors);
these shapes name the same parameters and values, and the schemathesis test sends what they allow.
"""

from __future__ import annotations

from marshmallow import fields

from orchestrator.accounts.users import UserStatus, UserType
from orchestrator.airtm.topups import Status as TopUpStatus
from orchestrator.escrow.disputes import OPENED_BY
from orchestrator.events import AGGREGATE_TYPES
from orchestrator.payments.withdrawal_states import Status as WithdrawalStatus
from schemas.base import BaseSchema
from schemas.disputes import DISPUTE_FILTERS
from schemas.fields import Enum, PrefixedId, Text
from schemas.orders import ORDER_STATUSES
from schemas.withdrawals import DESTINATION_TYPES


class PageLimit(fields.Integer):
    """``limit``: an integer >= 1, default 20; larger than 100 reads as 100 (api.md §1.6)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(metadata={"minimum": 1, "default": 20}, **kwargs)  # type: ignore[arg-type]


class Page(BaseSchema):
    limit = PageLimit()
    cursor = Text(min_length=1, metadata={"description": "the ``nextCursor`` of the previous page"})


class ListKeys(Page):
    userId = Text(metadata={"description": "owner label given at creation"})
    status = Enum(["ACTIVE", "REVOKED"])


class ListUsers(Page):
    type = Enum(list(UserType))
    status = Enum(list(UserStatus))
    externalUserId = Text()
    email = Text()


class ListOrders(Page):
    status = Enum(ORDER_STATUSES)
    buyerId = PrefixedId("user")
    sellerId = PrefixedId("user")
    clientOrderRef = Text()
    createdAfter = fields.DateTime(metadata={"description": "inclusive"})
    createdBefore = fields.DateTime(metadata={"description": "inclusive"})


class ListDisputes(Page):
    orderId = Text()
    status = Enum(DISPUTE_FILTERS["status"])
    openedBy = Enum(list(OPENED_BY))
    assignedTo = Text()


class ListWithdrawals(Page):
    userId = Text()
    status = Enum([str(s) for s in WithdrawalStatus])
    destinationType = Enum(DESTINATION_TYPES)


class Owner(BaseSchema):
    userId = Text(metadata={"description": "if given and not the owner: 404"})


class WalletTransactions(BaseSchema):
    limit = PageLimit()


class Events(BaseSchema):
    types = Text(metadata={"description": "comma-separated event types; ``*`` wildcards (``order.*``)"})
    resourceTypes = Text(metadata={"description": "comma-separated: " + ", ".join(sorted(AGGREGATE_TYPES))})
    since = Text(metadata={"description": "a position, an event id or an ISO time (``Last-Event-ID`` wins)"})
    eventNames = fields.Boolean(metadata={"description": "add an ``event:`` line per event"})


class ListTopUps(Page):
    userId = Text()
    status = Enum([str(s) for s in TopUpStatus])


_INSTANT_OR_DATE = {"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]}


class Period(BaseSchema):
    from_ = fields.String(data_key="from", metadata={
        "openapi": _INSTANT_OR_DATE, "description": "inclusive: an ISO 8601 instant, or a date (YYYY-MM-DD)"})
    to = fields.String(metadata={"openapi": _INSTANT_OR_DATE,
                                 "description": "inclusive: an ISO 8601 instant, or a date (its whole day)"})


class AuditLogs(Period, Page):
    resourceType = Text(min_length=1, max_length=128, metadata={"description": "e.g. Order, TopUp (any case)"})
    resourceId = Text(min_length=1, max_length=128)
    action = Text(min_length=1, max_length=128, metadata={"description": "e.g. order.created"})
    userId = PrefixedId("user")
    cursor = PrefixedId("audit", metadata={"description": "the ``nextCursor`` of the previous page"})
