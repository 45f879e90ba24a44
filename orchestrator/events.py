"""The domain event envelope (spec events.md §1) and the catalog's aggregate types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator import ids

#: Event-type prefix -> aggregate type; balance events belong to the Balance aggregate (id = user id).
AGGREGATES = {
    "user": "User",
    "wallet": "Wallet",
    "balance": "Balance",
    "topup": "TopUp",
    "order": "Order",
    "escrow": "Escrow",
    "dispute": "Dispute",
    "withdrawal": "Withdrawal",
    "reconciliation": "Reconciliation",  # reconciliation.differences_found (issue 10)
    "network": "Network",  # network.reset_detected (DESIGN decision 35; aggregate id = STELLAR_NETWORK)
    "treasury": "Treasury",  # treasury.low (DESIGN decision 25; aggregate id = the platform user's id)
}
AGGREGATE_TYPES = frozenset(AGGREGATES.values())


@dataclass(frozen=True)
class Event:
    """One domain event as stored in the outbox; ``position`` is given later by the relay."""

    event_id: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    metadata: dict[str, Any]
    occurred_at: datetime | None = None
    position: int | None = None

    def envelope(self) -> dict[str, Any]:
        """The JSON object streamed over SSE."""
        return {
            "eventId": self.event_id,
            "eventType": self.event_type,
            "occurredAt": iso(self.occurred_at) if self.occurred_at else None,
            "aggregateId": self.aggregate_id,
            "aggregateType": self.aggregate_type,
            "payload": self.payload,
            "metadata": self.metadata,
        }


def build(event_type: str, aggregate_id: str, payload: dict[str, Any], *, user_id: str | None,
          correlation_id: str | None, actor_type: str) -> Event:
    """A new event; metadata fields that are unknown are left out, as the spec asks."""
    aggregate_type = AGGREGATES[event_type.split(".", 1)[0]]
    metadata = {"correlationId": correlation_id, "userId": user_id, "actorType": actor_type}
    return Event(ids.new_id("event"), event_type, aggregate_type, aggregate_id, payload,
                 {k: v for k, v in metadata.items() if v is not None})


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (spec api.md §1.5)."""
    utc = moment.astimezone(UTC)  # the year padded by hand: strftime writes year 1 as "1"
    return f"{utc.year:04d}-{utc:%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(UTC)
