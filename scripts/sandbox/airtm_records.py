"""AirTM's records as the sandbox keeps them, and their wire shapes (`providers.md` §3.3 to §3.5)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

#: AirTM amounts are USD with at most two decimals.
CENT = Decimal("0.01")

PAYIN_TERMINAL = frozenset({"CONFIRMED", "FAILED", "CANCELED"})
PAYOUT_TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED"})

#: Webhook event types (§3.8): only these status changes are announced; the rest are seen by reads.
PAYIN_EVENTS = {
    "CREATED": "payin.created",
    "CONFIRMED": "payin.confirmed",
    "FAILED": "payin.failed",
    "CANCELED": "payin.canceled",
}
PAYOUT_EVENTS = {
    "CREATED": "payout.created",
    "COMPLETED": "payout.completed",
    "FAILED": "payout.failed",
    "CANCELED": "payout.canceled",
}


class AirtmError(Exception):
    """Raised when AirTM would refuse a request: its reason code, text and the HTTP status we pick."""

    def __init__(self, status: int, code: str, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.data = data

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            body["data"] = self.data
        return body


def money(value: Decimal) -> float:
    """JSON number for an amount (AirTM sends numbers; two decimals survive a float exactly enough)."""
    return float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_uuid() -> str:
    return str(uuid.uuid4())


def new_hash() -> str:
    return secrets.token_hex(32)


def _put(out: dict[str, Any], **optional: Any) -> dict[str, Any]:
    """Add optional fields only when set, as AirTM's `field?` marks them."""
    out.update({key: value for key, value in optional.items() if value is not None})
    return out


@dataclass
class User:
    """A seeded AirTM user; `payoutOutcome`/`payoutRejectCode` script what payouts to them do."""

    email: str
    id: str = field(default_factory=new_uuid)
    status: str = "active"
    is_verified: bool = True
    primary_email: bool = True
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    payout_outcome: str | None = None
    payout_reject_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "status": self.status,
            "primaryEmail": self.primary_email,
            "isVerified": self.is_verified,
        }
        return _put(out, firstName=self.first_name, lastName=self.last_name, country=self.country)

    def to_state(self) -> dict[str, Any]:
        out = self.to_json() | {"email": self.email}
        return _put(out, payoutOutcome=self.payout_outcome, payoutRejectCode=self.payout_reject_code)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> User:
        """The inverse of `to_state` (the control plane's view holds every field)."""
        return cls(
            email=state["email"], id=state["id"], status=state["status"], is_verified=state["isVerified"],
            primary_email=state["primaryEmail"], first_name=state.get("firstName"),
            last_name=state.get("lastName"), country=state.get("country"),
            payout_outcome=state.get("payoutOutcome"), payout_reject_code=state.get("payoutRejectCode"),
        )


def _to_state(record: Any, decimals: tuple[str, ...], moments: tuple[str, ...]) -> dict[str, Any]:
    """A record's fields with amounts as exact decimal strings and datetimes as ISO 8601 (microseconds)."""
    out = {f.name: getattr(record, f.name) for f in fields(record)}
    for name in decimals:
        out[name] = str(out[name])
    for name in moments:
        out[name] = out[name].isoformat() if out[name] is not None else None
    return out


def _from_state(state: dict[str, Any], decimals: tuple[str, ...], moments: tuple[str, ...]) -> dict[str, Any]:
    out = dict(state)
    for name in decimals:
        out[name] = Decimal(out[name])
    for name in moments:
        out[name] = datetime.fromisoformat(out[name]) if out[name] is not None else None
    return out


@dataclass
class PayIn:
    """A payment from an AirTM user to the enterprise, waiting for the buyer on the hosted page."""

    code: str
    amount: Decimal
    airtm_fee: Decimal
    description: str
    items: list[dict[str, Any]]
    confirmation_uri: str
    cancel_uri: str
    created_at: datetime
    expires_at: float
    id: str = field(default_factory=new_uuid)
    hash: str = field(default_factory=new_hash)
    status: str = "CREATED"
    airtm_user_id: str | None = None
    airtm_user_email: str | None = None
    failure_reason: str | None = None
    confirm_due: float | None = None
    updated_at: datetime | None = None

    @property
    def net_amount(self) -> Decimal:
        return self.amount - self.airtm_fee

    def to_state(self) -> dict[str, Any]:
        state = _to_state(self, ("amount", "airtm_fee"), ("created_at", "updated_at"))
        state["items"] = [item | {"amount": str(item["amount"])} for item in self.items]
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PayIn:
        loaded = _from_state(state, ("amount", "airtm_fee"), ("created_at", "updated_at"))
        loaded["items"] = [item | {"amount": Decimal(item["amount"])} for item in state["items"]]
        return cls(**loaded)

    @property
    def terminal(self) -> bool:
        return self.status in PAYIN_TERMINAL

    def to_json(self) -> dict[str, Any]:
        items = [
            {
                "id": item["id"],
                "payinId": self.id,
                "description": item["description"],
                "amount": money(item["amount"]),
                "quantity": item["quantity"],
            }
            for item in self.items
        ]
        out = {
            "id": self.id,
            "code": self.code,
            "hash": self.hash,
            "status": self.status,
            "amount": money(self.amount),
            "netAmount": money(self.net_amount),
            "airtmFee": money(self.airtm_fee),
            "description": self.description,
            "items": items,
            "confirmationUri": self.confirmation_uri,
            "cancelUri": self.cancel_uri,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at or self.created_at),
        }
        return _put(
            out,
            airtmUserId=self.airtm_user_id,
            airtmUserEmail=self.airtm_user_email,
            failureReason=self.failure_reason,
        )


_PAYOUT_DECIMALS = ("gross_amount", "enterprise_fee", "airtm_fee")


@dataclass
class Payout:
    """A payment from the enterprise to an AirTM user; `amount` is what the enterprise is debited."""

    airtm_user_id: str
    airtm_user_email: str
    gross_amount: Decimal
    enterprise_fee: Decimal
    airtm_fee: Decimal
    notes: str
    created_at: datetime
    code: str | None = None
    internal_note: str | None = None
    require_id_verified: bool = False
    id: str = field(default_factory=new_uuid)
    hash: str = field(default_factory=new_hash)
    status: str = "CREATED"
    reason_code: str | None = None
    reason_description: str | None = None
    updated_at: datetime | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    #: Sandbox clock time at which the committed payout settles, and how (`complete`, `pending`, …).
    due_at: float | None = None
    outcome: dict[str, Any] | None = None
    pending_since: float | None = None

    @property
    def amount(self) -> Decimal:
        return self.gross_amount - self.enterprise_fee

    def to_state(self) -> dict[str, Any]:
        return _to_state(self, _PAYOUT_DECIMALS, ("created_at", "updated_at"))

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Payout:
        return cls(**_from_state(state, _PAYOUT_DECIMALS, ("created_at", "updated_at")))

    @property
    def net_amount(self) -> Decimal:
        return self.gross_amount - self.enterprise_fee - self.airtm_fee

    @property
    def terminal(self) -> bool:
        return self.status in PAYOUT_TERMINAL

    def to_json(self) -> dict[str, Any]:
        out = {
            "id": self.id,
            "hash": self.hash,
            "airtmUserId": self.airtm_user_id,
            "airtmUserEmail": self.airtm_user_email,
            "status": self.status,
            "grossAmount": money(self.gross_amount),
            "amount": money(self.amount),
            "netAmount": money(self.net_amount),
            "airtmFee": money(self.airtm_fee),
            "enterpriseFee": money(self.enterprise_fee),
            "notes": self.notes,
            "requireIdVerified": self.require_id_verified,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at or self.created_at),
        }
        return _put(
            out,
            code=self.code,
            internalNote=self.internal_note,
            reasonCode=self.reason_code,
            reasonDescription=self.reason_description,
        )
