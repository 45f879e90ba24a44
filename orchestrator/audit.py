"""Audit entries: every domain event and every administrative act, with secrets and PII redacted."""

from __future__ import annotations

import re
from typing import Any

from orchestrator import ids
from orchestrator.db import audit as audit_db

MASK = "***REDACTED***"
#: Names masked whole (spec api.md §15); compared case-insensitively.
_EXACT = {"apikey", "secret", "password", "airtmapikey", "hashedkey", "salt", "token", "key"}
_CONTAINS = ("email", "account", "token", "secret", "password")
#: Never redacted, even when a rule above would match.
_NEVER = {"publickey", "idempotencykey", "amount", "status"}


def redact(value: Any, name: str = "") -> Any:
    """A copy of ``value`` with secrets masked, e-mails and account numbers partly kept."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    lowered = name.lower()
    if not lowered or lowered in _NEVER or lowered.endswith("id") or value is None:
        return value
    if "email" in lowered and isinstance(value, str) and "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if any(part in lowered for part in ("account", "bank", "number")) and isinstance(value, str):
        digits = re.sub(r"\D", "", value)
        return f"****{digits[-4:]}" if len(digits) >= 4 else MASK
    if lowered in _EXACT or lowered.endswith("key") or any(part in lowered for part in _CONTAINS):
        return MASK
    return value


def record(conn: Any, *, action: str, resource_type: str, resource_id: str | None, user_id: str | None,
           actor_type: str, actor_id: str | None, after: dict[str, Any] | None = None,
           before: dict[str, Any] | None = None, result: str = "SUCCESS",
           error: dict[str, Any] | None = None, idempotency_key: str | None = None,
           correlation_id: str | None = None) -> str:
    """Write one audit entry in the caller's transaction; returns its ``aud_`` id."""
    entry_id = ids.new_id("audit")
    audit_db.insert(conn, id=entry_id, action=action, resource_type=resource_type, resource_id=resource_id,
                    user_id=user_id, payload_before=redact(before) if before else None,
                    payload_after=redact(after) if after else None, actor_type=actor_type,
                    actor_id=actor_id, result=result, error=error, idempotency_key=idempotency_key,
                    correlation_id=correlation_id)
    return entry_id
