"""The domain event envelope (spec events.md §1) and the catalog's aggregate types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

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
    "webhook_endpoint": "WebhookEndpoint",  # webhook_endpoint.disabled (DESIGN decision 28)
    "webhook": "WebhookEndpoint",  # webhook.test, sent only to the endpoint under test
    "treasury": "Treasury",  # treasury.low (DESIGN decision 25; aggregate id = the platform user's id)
}
AGGREGATE_TYPES = frozenset(AGGREGATES.values())

#: Every event type the orchestrator emits (spec events.md §3): webhook endpoint filters are checked
#: against it (DESIGN decision 36), so an endpoint can never wait for a type that does not exist.
CATALOG = frozenset({
    "user.created", "user.airtm_linked", "user.stellar_linked",
    "wallet.created", "wallet.activated",
    "balance.credited", "balance.debited", "balance.reserved", "balance.released",
    "topup.created", "topup.confirmation_required", "topup.processing", "topup.succeeded", "topup.failed",
    "topup.canceled",
    "order.created", "order.funds_reserved", "order.canceled", "order.escrow_creating", "order.escrow_funding",
    "order.escrow_funded", "order.in_progress", "order.release_requested", "order.released",
    "order.refund_requested", "order.refunded", "order.disputed", "order.closed", "order.operation_failed",
    "escrow.created", "escrow.funding_started", "escrow.funded", "escrow.milestone_completed", "escrow.released",
    "escrow.refunded",
    "dispute.opened", "dispute.under_review", "dispute.resolved",
    "withdrawal.created", "withdrawal.committed", "withdrawal.pending", "withdrawal.pending_user_action",
    "withdrawal.completed", "withdrawal.failed", "withdrawal.canceled",
    "reconciliation.differences_found", "treasury.low", "network.reset_detected",
    "webhook_endpoint.disabled", "webhook.test",
})
#: The families a ``family.*`` filter may name.
FAMILIES = frozenset(t.split(".", 1)[0] for t in CATALOG)


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


def envelope_json(event_id: str, event_type: str, occurred_at: str | None, aggregate_id: str,
                  aggregate_type: str, payload: str, metadata: str) -> str:
    """``json.dumps(event.envelope())`` built from parts already encoded: the time as ``iso`` writes it and
    the payload and metadata as JSON text (PostgreSQL's ``jsonb::text``, which uses the same ``", "`` and
    ``": "`` separators). The same keys in the same order; the JSON text is kept as stored (non-ASCII
    characters unescaped, numbers as written), so a client parsing either gets equal values."""
    return ('{"eventId": ' + _string(event_id) + ', "eventType": ' + _string(event_type)
            + ', "occurredAt": ' + ("null" if occurred_at is None else _string(occurred_at))
            + ', "aggregateId": ' + _string(aggregate_id) + ', "aggregateType": ' + _string(aggregate_type)
            + ', "payload": ' + payload + ', "metadata": ' + metadata + "}")


#: A JSON string literal, as ``json.dumps`` writes one (the C encoder, ASCII-escaped).
_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def build(event_type: str, aggregate_id: str, payload: dict[str, Any], *, user_id: str | None,
          correlation_id: str | None, actor_type: str) -> Event:
    """A new event; metadata fields that are unknown are left out, as the spec asks."""
    aggregate_type = AGGREGATES[event_type.split(".", 1)[0]]
    metadata = {"correlationId": correlation_id, "userId": user_id, "actorType": actor_type}
    return Event(ids.new_id("event"), event_type, aggregate_type, aggregate_id, payload,
                 {k: v for k, v in metadata.items() if v is not None})


def iso(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z`` (spec api.md §1.5)."""
    # strftime writes year 1 as "1" and cost 4 µs a call; a page of orders writes over two hundred
    # times, a fifth of its rendering (issue 16). orjson writes an aware time in C as
    # "YYYY-MM-DDTHH:MM:SS.ffffffZ" at offset zero (quoted: 29 bytes), which is cut to milliseconds; a
    # time on a whole second (no fraction written) is formatted by hand. A time already at offset zero
    # (psycopg's) needs no conversion.
    utc = moment if moment.tzinfo in _UTC_ZONES or moment.utcoffset() == _ZERO else moment.astimezone(UTC)
    written = _dumps(utc, option=_UTC_Z)
    if len(written) == 29:
        return written[1:24].decode() + "Z"
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - half an f-string's time here
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond // 1000)


_dumps, _UTC_Z = orjson.dumps, orjson.OPT_UTC_Z


_ZERO = timedelta(0)
#: Zones always at offset zero, known without asking (psycopg's times carry the server's ``Etc/UTC``).
_UTC_ZONES = frozenset({UTC, ZoneInfo("Etc/UTC"), ZoneInfo("UTC")})


def now() -> datetime:
    return datetime.now(UTC)
