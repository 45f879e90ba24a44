"""Audit entries: every domain event and every administrative act, redacted, in one tamper-evident chain.

An entry is written in the transaction of the change it records (so it exists iff the change does).
The outbox relay later stamps committed entries with a gap-free ``position`` in commit order and a
hash over the entry's content and the previous entry's hash (DESIGN decisions 14 and 15: commit
order, never insertion order, so a long transaction cannot slip an entry in behind a later one that
was already chained). ``verify`` walks the chain and names the first entry that was changed, removed
or put out of order. The table itself refuses UPDATE and DELETE (migration 0009).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from orchestrator import ids, logs
from orchestrator.db import audit as audit_db

MASK = "***REDACTED***"
ACTOR_TYPES = ("USER", "SYSTEM", "WEBHOOK", "SUPPORT", "MASTER")
#: Names masked whole (spec api.md §15); compared case-insensitively.
_EXACT = {"apikey", "secret", "password", "airtmapikey", "hashedkey", "salt", "token", "key",
          "keyhash", "signature", "authorization"}  # the last three: our key rows and webhook headers
_CONTAINS = ("email", "account", "token", "secret", "password")
#: Never redacted, even when a rule above would match.
_NEVER = {"publickey", "idempotencykey", "amount", "status"}
_PARTIAL_ACCOUNT = ("account", "bank", "number")
#: Values scrubbed wherever they appear, whatever the field is called (defence in depth): e-mail
#: addresses keep their first character and domain; Stellar secret seeds and our API keys and tokens
#: are masked whole.
_SECRETS = re.compile(r"\bS[A-Z2-7]{55}\b|\bohk_(?:test|live|tok)_[A-Za-z0-9_.-]+")
#: The first chain entry's "previous hash".
GENESIS = "0" * 64


def _masked_name(lowered: str) -> bool:
    return lowered in _EXACT or lowered.endswith("key") or any(part in lowered for part in _CONTAINS)


def _scrub(value: str) -> str:
    return logs.mask_emails(_SECRETS.sub(MASK, value))


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` with secrets masked, e-mails and account numbers partly kept (api.md §15)."""
    lowered = name.lower()
    never = bool(lowered) and (lowered in _NEVER or lowered.endswith("id"))
    if isinstance(value, (dict, list)):
        if lowered and not never and _masked_name(lowered) and "email" not in lowered:
            return MASK  # a secret-named object is hidden whole, not field by field
        if isinstance(value, dict):
            return {k: redact(v, str(k)) for k, v in value.items()}
        return [redact(v, name) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        value = str(value)
    if never or not lowered:
        return _scrub(value)
    if "email" in lowered and "@" in value:
        local, _, domain = value.rpartition("@")
        return f"{local[:1]}***@{domain}"
    if any(part in lowered for part in _PARTIAL_ACCOUNT):
        digits = re.sub(r"\D", "", value)
        return f"****{digits[-4:]}" if len(digits) >= 4 else MASK
    if _masked_name(lowered):
        return MASK
    return _scrub(value)


@dataclass(frozen=True)
class Actor:
    """Who acted: one of ``ACTOR_TYPES`` and, where known, the key, user, provider or process."""

    type: str
    id: str | None = None


def values(*, action: str, resource_type: str, resource_id: str | None, user_id: str | None, actor: Actor,
           after: Mapping[str, Any] | None = None, before: Mapping[str, Any] | None = None,
           result: str = "SUCCESS", error: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
           correlation_id: str | None = None, request_id: str | None = None) -> dict[str, Any]:
    """The column values of one new entry, redacted (error objects too: their details may carry input)."""
    if actor.type not in ACTOR_TYPES:
        raise ValueError(f"unknown actor type {actor.type}")
    return {"id": ids.new_id("audit"), "action": action, "resource_type": resource_type,
            "resource_id": resource_id, "user_id": user_id,
            "payload_before": redact(dict(before)) if before else None,
            "payload_after": redact(dict(after)) if after else None,
            "actor_type": actor.type, "actor_id": actor.id, "result": result,
            "error": redact(dict(error)) if error else None, "idempotency_key": idempotency_key,
            "correlation_id": correlation_id, "request_id": request_id}


def record(conn: Any, *, action: str, resource_type: str, resource_id: str | None, user_id: str | None,
           actor_type: str, actor_id: str | None, after: Mapping[str, Any] | None = None,
           before: Mapping[str, Any] | None = None, result: str = "SUCCESS",
           error: Mapping[str, Any] | None = None, idempotency_key: str | None = None,
           correlation_id: str | None = None, request_id: str | None = None) -> str:
    """Write one audit entry in the caller's transaction; returns its ``aud_`` id.

    Prefer ``UnitOfWork.audit`` inside a unit of work: it fills the context and asks the relay to chain.
    """
    row = values(action=action, resource_type=resource_type, resource_id=resource_id, user_id=user_id,
                 actor=Actor(actor_type, actor_id), after=after, before=before, result=result, error=error,
                 idempotency_key=idempotency_key, correlation_id=correlation_id, request_id=request_id)
    audit_db.insert(conn, **row)
    return str(row["id"])


def webhook_received(conn: Any, *, provider: str, delivery_id: str | None, event_type: str | None,
                     resource_type: str, resource_id: str | None, user_id: str | None = None,
                     body: Mapping[str, Any] | None = None, outcome: str | None = None,
                     result: str = "SUCCESS", error: Mapping[str, Any] | None = None) -> str:
    """The ``webhook.received`` entry (api.md §15) for one provider delivery, in the caller's transaction.

    Call it in the transaction that records the delivery (AirTM: where the ``svix-id`` is deduplicated),
    with the provider's event type and the resource it concerns (``TopUp``/``Withdrawal``/``User``).
    ``body`` is redacted like every payload; ``delivery_id`` (the ``svix-id``) is the correlation id.
    ``outcome`` says what processing did; ``result="FAILURE"`` with ``error`` records a delivery that was
    refused or ignored (unknown code, unknown event type).
    """
    after = {"provider": provider, "eventType": event_type, "deliveryId": delivery_id, "outcome": outcome,
             "body": dict(body or {})}
    return record(conn, action="webhook.received", resource_type=resource_type, resource_id=resource_id,
                  user_id=user_id, actor_type="WEBHOOK", actor_id=provider, after=after, result=result,
                  error=error, correlation_id=delivery_id)


# --- the chain --------------------------------------------------------------------------------------

def content_hash(row: Mapping[str, Any], *, position: int, prev_hash: str) -> str:
    """SHA-256 over the entry's content as stored, its position and the previous entry's hash."""
    occurred = row["occurred_at"]
    content = {name: row[name] for name in audit_db.CONTENT_COLUMNS if name != "occurred_at"}
    content["occurred_at"] = occurred.astimezone(UTC).isoformat() if occurred is not None else None
    content.update(position=position, prev_hash=prev_hash)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def chain_committed(conn: Any, *, batch: int = 5000, limit: int = 20000) -> int:
    """Stamp committed, unchained entries (up to ``limit`` per pass) with the next position and their
    hashes; returns how many.

    Called by the relay while it holds the relay lock, so one chainer runs at a time and each pass sees
    everything committed before it began: positions follow commit order, ``seq`` breaks ties. The limit
    keeps a large backlog (the first pass after the migration on a big table) from holding the relay
    lock, and so the event stream, for long; the next passes take the rest.
    """
    rows = audit_db.unchained(conn, batch)
    if not rows:
        return 0  # the common pass: one indexed read, no head row lock
    position, prev_hash = audit_db.head_for_update(conn)
    prev_hash = prev_hash or GENESIS
    stamped = 0
    while rows and stamped < limit:
        stamps = []
        for row in rows:
            position += 1
            entry_hash = content_hash(row, position=position, prev_hash=prev_hash)
            stamps.append({"id": row["id"], "position": position, "prev_hash": prev_hash, "entry_hash": entry_hash})
            prev_hash = entry_hash
        audit_db.stamp(conn, stamps)
        stamped += len(stamps)
        full = len(rows) == batch  # a shorter batch was the last: no read to find nothing
        rows = audit_db.unchained(conn, batch) if full and stamped < limit else []
    if stamped:
        audit_db.set_head(conn, position)
    return stamped


@dataclass
class Verification:
    """What ``audit verify`` found: the first broken entry (if any) and how far it got."""

    checked: int = 0
    head: int = 0
    head_hash: str | None = None
    unchained: int = 0
    problem: str | None = None
    entry_id: str | None = None
    position: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(conn: Any, *, batch: int = 2000) -> Verification:
    """Walk the chain by position and stop at the first entry that was changed, removed or reordered.

    - a position missing from the sequence (or the head past the last row): an entry was removed;
    - ``prev_hash`` not the previous entry's hash: the entry was moved or inserted out of order;
    - the recomputed content hash differs from ``entry_hash``: the entry was changed.
    """
    found = Verification(head=audit_db.head(conn), unchained=audit_db.unchained_count(conn))
    expected_position, prev_hash, prev_id, past_head = 0, GENESIS, None, None
    while True:
        rows = audit_db.chained_after(conn, expected_position, batch)
        for row in rows:
            expected_position += 1
            where = f"entry {row['id']} at position {row['position']}"
            if row["position"] != expected_position:
                after = f"after entry {prev_id}" if prev_id else "at the start of the chain"
                return _fail(found, row["id"], expected_position,
                             f"the entry at position {expected_position} ({after}) was removed: the chain "
                             f"jumps to {where}")
            if row["prev_hash"] != prev_hash:
                follows = f"entry {prev_id}" if prev_id else "the start of the chain"
                return _fail(found, row["id"], row["position"],
                             f"{where} was inserted or moved out of order: it does not follow {follows}")
            if content_hash(row, position=row["position"], prev_hash=row["prev_hash"]) != row["entry_hash"]:
                return _fail(found, row["id"], row["position"], f"{where} was changed after it was chained")
            prev_hash, prev_id = row["entry_hash"], row["id"]
            if row["position"] == found.head + 1:
                past_head = row["id"]
            found.checked += 1
        if len(rows) < batch:
            break
    found.head_hash = prev_hash if found.checked else None
    if expected_position < found.head:
        return _fail(found, None, expected_position + 1,
                     f"the chain ends at position {expected_position} (entry {prev_id}) but the relay chained "
                     f"{found.head}: entries {expected_position + 1}..{found.head} were removed")
    if expected_position > found.head:
        return _fail(found, past_head, found.head + 1,
                     f"entry {past_head} and any after it were inserted past the relay's last position "
                     f"({found.head}): the chain runs to {expected_position}")
    return found


def _fail(found: Verification, entry_id: str | None, position: int, problem: str) -> Verification:
    found.entry_id, found.position, found.problem = entry_id, position, problem
    return found
