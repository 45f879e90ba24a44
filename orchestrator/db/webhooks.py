"""Webhook endpoints, deliveries and attempts (issue 17): the relay's delivery rows, the drain's reads and
writes, and the statements the web tier runs for the endpoint API."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Insert,
    Select,
    Update,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)

from orchestrator.db.tables import outbox, webhook_attempts, webhook_deliveries, webhook_endpoints
from orchestrator.events import Event

#: First key of the two-int advisory lock a worker holds while it drains one endpoint (the second key
#: is the endpoint's ``lock_key``); PostgreSQL keeps two-int and bigint lock keys apart.
DRAIN_LOCK_CLASS = 0x0FFE_0002

#: Whether an endpoint's filter takes an outbox row: no filter, ``*``, the exact type or ``family.*``
#: (filters are validated against the catalogue, so these are the only forms stored).
_MATCH = ("(cardinality(e.event_types) = 0 OR '*' = ANY(e.event_types) OR o.event_type = ANY(e.event_types) "
          "OR split_part(o.event_type, '.', 1) || '.*' = ANY(e.event_types))")
_NEW_ID = "'whd_' || replace(gen_random_uuid()::text, '-', '')"


@dataclass(frozen=True)
class Endpoint:
    id: str
    lock_key: int
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    secret: dict[str, str]
    previous_secret: dict[str, str] | None
    previous_expires_at: datetime | None
    failing_since: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    position: int | None
    body: dict[str, Any] | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    retry_from: datetime
    created_at: datetime
    updated_at: datetime


def to_endpoint(row: Any, prefix: str = "") -> Endpoint:
    r = {k[len(prefix):]: v for k, v in row._mapping.items() if k.startswith(prefix)} if prefix else row._mapping
    return Endpoint(r["id"], r["lock_key"], r["url"], r["description"], list(r["event_types"]), r["enabled"],
                    r["disabled_reason"], r["secret"], r["previous_secret"], r["previous_expires_at"],
                    r["failing_since"], r["created_at"], r["updated_at"])


def to_delivery(row: Any) -> Delivery:
    r = row._mapping
    return Delivery(r["id"], r["endpoint_id"], r["event_id"], r["event_type"], r["position"], r["body"], r["status"],
                    r["attempts"], r["next_attempt_at"], r["retry_from"], r["created_at"], r["updated_at"])


# --- endpoints (the web tier runs these statements) -----------------------------------------------------

def endpoint_by_id(endpoint_id: str) -> Select:
    return select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)


def count_endpoints() -> Select:
    return select(func.count()).select_from(webhook_endpoints)


def lock_endpoints() -> Any:
    """Serialises endpoint creation, so two concurrent creates cannot both pass the limit."""
    return text("SELECT pg_advisory_xact_lock(:a, 0)").bindparams(a=DRAIN_LOCK_CLASS)


def insert_endpoint(**values: Any) -> Insert:
    return insert(webhook_endpoints).values(**values).returning(webhook_endpoints)


def insert_event(event: Event) -> Insert:
    """An outbox event written by the web tier (an operator's disabling); the scheduler's relay numbers it."""
    return insert(outbox).values(
        event_id=event.event_id, event_type=event.event_type, aggregate_type=event.aggregate_type,
        aggregate_id=event.aggregate_id, payload=event.payload, metadata=event.metadata)


def update_endpoint(endpoint_id: str, **values: Any) -> Update:
    return (update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
            .values(updated_at=func.now(), **values).returning(webhook_endpoints))


def delete_endpoint(endpoint_id: str) -> Any:
    return delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).returning(webhook_endpoints.c.id)


def resume(endpoint_id: str) -> Update:
    """A re-enabled endpoint's pending deliveries: due now, with a fresh retry window."""
    return (update(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id,
                                             webhook_deliveries.c.status == "PENDING")
            .values(next_attempt_at=func.now(), retry_from=func.now(), updated_at=func.now()))


def endpoints_page(*, after: tuple[datetime, str] | None, limit: int) -> Select:
    stmt = select(webhook_endpoints)
    if after is not None:
        stmt = stmt.where(tuple_(webhook_endpoints.c.created_at, webhook_endpoints.c.id) < tuple_(*after))
    return stmt.order_by(webhook_endpoints.c.created_at.desc(), webhook_endpoints.c.id.desc()).limit(limit + 1)


def endpoint_cursor(endpoint_id: str) -> Select:
    return select(webhook_endpoints.c.created_at, webhook_endpoints.c.id).where(
        webhook_endpoints.c.id == endpoint_id)


def sealed_secrets(conn: Connection) -> list[Any]:
    """Every endpoint's sealed secrets, locked (a key rotation re-seals them)."""
    return list(conn.execute(select(webhook_endpoints.c.id, webhook_endpoints.c.secret,
                                    webhook_endpoints.c.previous_secret)
                             .order_by(webhook_endpoints.c.id).with_for_update()).all())


def reseal(conn: Connection, endpoint_id: str, *, secret: dict[str, str], previous: dict[str, str] | None) -> None:
    conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                 .values(secret=secret, previous_secret=previous))


# --- deliveries: created by the relay -------------------------------------------------------------------

def create_deliveries(conn: Connection, *, after: int, upto: int) -> list[str]:
    """One delivery per (event in ``(after, upto]``, enabled endpoint whose filter takes it); returns the
    endpoints that received any. In the relay's transaction, so a delivery exists iff its event is numbered."""
    rows = conn.execute(text(
        f"INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, position) "
        f"SELECT {_NEW_ID}, e.id, o.event_id, o.event_type, o.position "
        f"FROM outbox o JOIN webhook_endpoints e ON e.enabled AND {_MATCH} "
        f"WHERE o.position > :after AND o.position <= :upto "
        f"ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING endpoint_id"),
        {"after": after, "upto": upto}).scalars().all()
    return sorted(set(rows))


# --- deliveries: the drain ------------------------------------------------------------------------------

@contextmanager
def drain_lock(conn: Connection, endpoint_id: str) -> Iterator[bool]:
    """Try the drain lock of an enabled endpoint, looked up and taken in one statement, on the drain's
    connection (autocommit, so no transaction stays open across HTTP calls); yields whether it was taken
    (False: another worker holds it, or the endpoint is disabled or gone). A killed worker's lock goes
    with its connection."""
    row = conn.execute(text(
        "SELECT lock_key, pg_try_advisory_lock(:a, CAST(lock_key AS integer)) AS held FROM webhook_endpoints "
        "WHERE id = :endpoint AND enabled"), {"a": DRAIN_LOCK_CLASS, "endpoint": endpoint_id}).first()
    held = bool(row and row.held)
    try:
        yield held
    finally:
        if held and row is not None:
            conn.execute(text("SELECT pg_advisory_unlock(:a, :b)"), {"a": DRAIN_LOCK_CLASS, "b": row.lock_key})


@dataclass(frozen=True)
class Due:
    """One delivery of a drain's batch, with the event object it sends (None: no longer retained)."""

    delivery: Delivery
    envelope: dict[str, Any] | None


_ENDPOINT_COLUMNS = [c.label(f"e_{c.name}") for c in webhook_endpoints.c]
_EVENT_COLUMNS = [c.label(f"o_{c.name}") for c in (
    outbox.c.event_id, outbox.c.event_type, outbox.c.aggregate_type, outbox.c.aggregate_id, outbox.c.payload,
    outbox.c.metadata, outbox.c.occurred_at, outbox.c.position)]


def due(conn: Connection, endpoint_id: str, *, limit: int = 50) -> tuple[Endpoint | None, list[Due]]:
    """The enabled endpoint, as it is now (rotated or edited meanwhile), and its pending deliveries whose
    time has come, in stream order (tests before positioned events), each with its event's body from the
    outbox: one statement for what took a transaction per delivery."""
    rows = conn.execute(
        select(webhook_deliveries, *_ENDPOINT_COLUMNS, *_EVENT_COLUMNS)
        .join(webhook_endpoints, (webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)
              & webhook_endpoints.c.enabled.is_(True))
        .outerjoin(outbox, outbox.c.event_id == webhook_deliveries.c.event_id)
        .where(webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.status == "PENDING",
               webhook_deliveries.c.next_attempt_at <= func.now())
        .order_by(webhook_deliveries.c.position.asc().nulls_first(), webhook_deliveries.c.created_at)
        .limit(limit)).all()
    if not rows:
        return None, []
    return to_endpoint(rows[0], "e_"), [Due(to_delivery(r), r.body or _envelope(r._mapping)) for r in rows]


def _envelope(r: Any) -> dict[str, Any] | None:
    if r["o_event_id"] is None:
        return None
    return Event(r["o_event_id"], r["o_event_type"], r["o_aggregate_type"], r["o_aggregate_id"], r["o_payload"],
                 r["o_metadata"], r["o_occurred_at"], r["o_position"]).envelope()


def next_due_in(conn: Connection, endpoint_id: str) -> float | None:
    """Seconds until the endpoint's next pending delivery is due by the database's clock (0: due now), or
    None when nothing is pending."""
    seconds = conn.execute(text(
        "SELECT extract(epoch FROM min(next_attempt_at) - now())::float FROM webhook_deliveries "
        "WHERE endpoint_id = :endpoint AND status = 'PENDING'"), {"endpoint": endpoint_id}).scalar()
    return None if seconds is None else max(0.0, seconds)


#: The failing streak an attempt leaves: ended (a success), started if none runs (a failure), untouched.
HEALTHY, FAILING, UNCHANGED = "healthy", "failing", "unchanged"

#: One attempt recorded in one statement (one round trip): the endpoint row locked first (``ep``: only
#: rows it yields reach the delivery update, so the endpoint is locked before the delivery, the order of
#: a delete cascading to the deliveries, and a deleted endpoint records nothing), the delivery's next
#: state, its attempt row, and the failing streak, written only when it changes.
_RECORD = text("""
WITH ep AS (
    SELECT id, failing_since FROM webhook_endpoints WHERE id = :endpoint FOR NO KEY UPDATE
), d AS (
    UPDATE webhook_deliveries SET status = :status, attempts = attempts + 1,
        next_attempt_at = CAST(:next_attempt_at AS timestamptz), updated_at = now()
    WHERE id = :delivery AND endpoint_id IN (SELECT id FROM ep) RETURNING id
), a AS (
    INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, succeeded, latency_ms, error,
                                  response_excerpt, next_attempt_at)
    SELECT d.id, CAST(:attempted_at AS timestamptz), CAST(:status_code AS integer), CAST(:succeeded AS boolean),
           CAST(:latency_ms AS integer), CAST(:error AS varchar), CAST(:excerpt AS text),
           CAST(:next_attempt_at AS timestamptz) FROM d
), streak AS (
    SELECT ep.id, CASE CAST(:streak AS text) WHEN 'healthy' THEN NULL
                      WHEN 'failing' THEN coalesce(ep.failing_since, CAST(:attempted_at AS timestamptz))
                      ELSE ep.failing_since END AS failing_since
    FROM ep
), changed AS (
    UPDATE webhook_endpoints w SET failing_since = streak.failing_since FROM streak
    WHERE w.id = streak.id AND w.failing_since IS DISTINCT FROM streak.failing_since
)
SELECT (SELECT count(*) FROM d) AS recorded, (SELECT failing_since FROM streak) AS failing_since
""")


def record(conn: Connection, delivery: Delivery, *, status: str, status_code: int | None, succeeded: bool,
           latency_ms: int, error: str | None, excerpt: str | None, next_attempt_at: datetime | None,
           attempted_at: datetime, streak: str) -> tuple[bool, datetime | None]:
    """The attempt row, the delivery's new state and the endpoint's failing streak (``HEALTHY``, ``FAILING``
    or ``UNCHANGED``); returns whether it was recorded (False: the endpoint is gone, with its deliveries)
    and when the endpoint's failing streak began, if one runs."""
    row = conn.execute(_RECORD, {
        "endpoint": delivery.endpoint_id, "delivery": delivery.id, "status": status,
        "next_attempt_at": next_attempt_at, "attempted_at": attempted_at, "status_code": status_code,
        "succeeded": succeeded, "latency_ms": latency_ms, "error": error, "excerpt": excerpt,
        "streak": streak}).one()
    return bool(row.recorded), row.failing_since


def disable(conn: Connection, endpoint_id: str, reason: str) -> Endpoint | None:
    """Disable an enabled endpoint; None if it was already disabled (or is gone)."""
    row = conn.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id,
                                                       webhook_endpoints.c.enabled.is_(True))
                       .values(enabled=False, disabled_reason=reason, updated_at=func.now())
                       .returning(webhook_endpoints)).first()
    return to_endpoint(row) if row else None


def due_endpoints(conn: Connection) -> list[str]:
    """Enabled endpoints with a delivery due (the scheduler's sweep: lost messages, killed workers)."""
    return list(conn.execute(
        select(webhook_deliveries.c.endpoint_id).distinct()
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)
        .where(webhook_endpoints.c.enabled.is_(True), webhook_deliveries.c.status == "PENDING",
               webhook_deliveries.c.next_attempt_at <= func.now())).scalars().all())


# --- deliveries: the web tier ---------------------------------------------------------------------------

def delivery_by_id(delivery_id: str) -> Select:
    return select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)


def deliveries_page(endpoint_id: str, *, status: str | None, after: tuple[datetime, str] | None,
                    limit: int) -> Select:
    stmt = select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
    if status is not None:
        stmt = stmt.where(webhook_deliveries.c.status == status)
    if after is not None:
        stmt = stmt.where(tuple_(webhook_deliveries.c.created_at, webhook_deliveries.c.id) < tuple_(*after))
    return stmt.order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc()).limit(limit + 1)


def delivery_cursor(endpoint_id: str) -> Any:
    def cursor_of(delivery_id: str) -> Select:
        return select(webhook_deliveries.c.created_at, webhook_deliveries.c.id).where(
            webhook_deliveries.c.id == delivery_id, webhook_deliveries.c.endpoint_id == endpoint_id)
    return cursor_of


def attempts_of(delivery_ids: Sequence[str]) -> Select:
    return (select(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(list(delivery_ids)))
            .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.id))


def requeue(delivery_id: str) -> Update:
    """A manual retry: pending again, due now, with a fresh retry window."""
    return (update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
            .values(status="PENDING", next_attempt_at=func.now(), retry_from=func.now(), updated_at=func.now())
            .returning(webhook_deliveries))


def insert_test_delivery(*, delivery_id: str, endpoint_id: str, body: dict[str, Any]) -> Insert:
    return insert(webhook_deliveries).values(
        id=delivery_id, endpoint_id=endpoint_id, event_id=body["eventId"], event_type=body["eventType"],
        position=None, body=body).returning(webhook_deliveries)


def _range(since: datetime, until: datetime | None) -> tuple[str, dict[str, Any]]:
    if until is None:
        return "o.relayed_at > :since", {"since": since}
    return "o.relayed_at > :since AND o.relayed_at <= :until", {"since": since, "until": until}


def replay_requeue(endpoint_id: str, *, since: datetime, until: datetime | None) -> Any:
    """Existing deliveries of events relayed in the range: pending again, due now (run before the insert)."""
    where, params = _range(since, until)
    return text(
        "UPDATE webhook_deliveries d SET status = 'PENDING', next_attempt_at = now(), retry_from = now(), "
        "updated_at = now() FROM outbox o WHERE d.endpoint_id = :endpoint AND d.event_id = o.event_id AND "
        f"{where} RETURNING d.id").bindparams(endpoint=endpoint_id, **params)


def replay_missing(endpoint_id: str, *, since: datetime, until: datetime | None) -> Any:
    """Deliveries for retained events in the range that the endpoint has none of (e.g. positioned before
    it existed or while it was disabled), filtered as the relay filters."""
    where, params = _range(since, until)
    return text(
        f"INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, position) "
        f"SELECT {_NEW_ID}, e.id, o.event_id, o.event_type, o.position FROM outbox o "
        f"JOIN webhook_endpoints e ON e.id = :endpoint AND {_MATCH} "
        f"WHERE o.position IS NOT NULL AND {where} "
        f"ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id").bindparams(endpoint=endpoint_id, **params)
