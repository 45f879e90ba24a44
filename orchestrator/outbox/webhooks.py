"""Outbound webhook rules (issue 17, DESIGN decisions 18, 28, 36): signing secrets and their sealing,
the Standard Webhooks signature, endpoint URL and filter checks, and the retry schedule.

Signature scheme, from the Standard Webhooks specification 1.0.0
(github.com/standard-webhooks/standard-webhooks, ``spec/standard-webhooks.md``, "Signature scheme" and
"Webhook headers"): the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``, HMAC-SHA256 keyed
with the base64-decoded part of a ``whsec_`` secret of 24 to 64 random bytes, sent as ``v1,<base64>``;
during a rotation each secret's signature is sent, space-delimited, in ``webhook-signature``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from orchestrator import crypto, events, ids
from orchestrator.db import session
from orchestrator.db import webhooks as webhooks_db
from orchestrator.errors import BusinessRuleViolation, NotFound, Unavailable, ValidationFailed

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES = 32  # the spec's range is 24-64 bytes
#: What a receiver gets of our answer's record: the first 4 KB (issue 17, "Safety and bad input").
EXCERPT_BYTES = 4096
URL_MAX = 2048
POSITION_HEADER = "OfferHub-Event-Position"
#: Reasons an endpoint stops receiving (``disabledReason``, the ``webhook_endpoint.disabled`` payload).
GONE, FAILING, OPERATOR = "GONE", "FAILING", "OPERATOR"


# --- secrets -------------------------------------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def keyring(settings: Any) -> crypto.Keyring:
    """Webhook secrets are sealed with the wallet key (``WALLET_ENCRYPTION_KEY``), like wallet secrets."""
    if not settings.wallet_encryption_key:
        raise Unavailable("Webhook secrets are sealed with WALLET_ENCRYPTION_KEY, which is not set",
                          details={"setting": "WALLET_ENCRYPTION_KEY"})
    return crypto.Keyring.from_settings(settings.wallet_encryption_key, settings.wallet_encryption_key_previous)


def seal(ring: crypto.Keyring, secret: str, endpoint_id: str) -> dict[str, str]:
    """The stored form; the endpoint id is the associated data, so a secret cannot be moved to another row."""
    sealed = crypto.seal(ring, secret, public_key=endpoint_id)
    return {"ciphertext": sealed.ciphertext, "nonce": sealed.nonce, "keyVersion": sealed.key_version}


def unseal(ring: crypto.Keyring, stored: dict[str, str], endpoint_id: str) -> str:
    return crypto.open_sealed(ring, crypto.Sealed(stored["ciphertext"], stored["nonce"], stored["keyVersion"]),
                              public_key=endpoint_id)


def signing_secrets(ring: crypto.Keyring, endpoint: Any, now: datetime) -> list[str]:
    """The current secret, and the previous one while its overlap window lasts."""
    found = [unseal(ring, endpoint.secret, endpoint.id)]
    if endpoint.previous_secret and endpoint.previous_expires_at and endpoint.previous_expires_at > now:
        found.append(unseal(ring, endpoint.previous_secret, endpoint.id))
    return found


def reseal_all(engine: Any, ring: crypto.Keyring) -> tuple[int, int, list[str]]:
    """Re-seal every endpoint's secrets under the current key (``wallets rotate-key`` runs this after the
    wallets): (re-sealed, already current, endpoint ids that neither key opens)."""
    resealed, current, unopened = 0, 0, []
    with session.transaction(engine) as conn:
        for endpoint_id, secret, previous in webhooks_db.sealed_secrets(conn):
            stored = [s for s in (secret, previous) if s]
            if all(s["keyVersion"] == ring.version for s in stored):
                current += 1
                continue
            try:
                fresh = [seal(ring, unseal(ring, s, endpoint_id), endpoint_id) for s in stored]
            except crypto.SealError:
                unopened.append(endpoint_id)
                continue
            webhooks_db.reseal(conn, endpoint_id, secret=fresh[0], previous=fresh[1] if previous else None)
            resealed += 1
        conn.commit()
    return resealed, current, unopened


# --- the signature -------------------------------------------------------------------------------------

def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of ``{id}.{timestamp}.{body}``."""
    mac = hmac.new(secret_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def body_of(envelope: dict[str, Any]) -> bytes:
    """The request body: the event object serialised exactly as the SSE ``data:`` line carries it."""
    return json.dumps(envelope).encode()


def headers(secrets_: Sequence[str], *, event_id: str, timestamp: int, body: bytes,
            position: int | None) -> dict[str, str]:
    out = {"Content-Type": "application/json", "User-Agent": "OfferHub-Webhooks/1",
           "webhook-id": event_id, "webhook-timestamp": str(timestamp),
           "webhook-signature": " ".join(sign(s, event_id, timestamp, body) for s in secrets_)}
    if position is not None:
        out[POSITION_HEADER] = str(position)
    return out


def test_event(endpoint_id: str, *, correlation_id: str | None) -> dict[str, Any]:
    """The ``webhook.test`` event object; it never enters the outbox (SSE never carries it)."""
    metadata = {"correlationId": correlation_id, "actorType": "SUPPORT"}
    return {"eventId": ids.new_id("event"), "eventType": "webhook.test", "occurredAt": events.iso(events.now()),
            "aggregateId": endpoint_id, "aggregateType": "WebhookEndpoint", "payload": {"endpointId": endpoint_id},
            "metadata": {k: v for k, v in metadata.items() if v is not None}}


# --- endpoint checks -----------------------------------------------------------------------------------

def url_refused(reason: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, code="WEBHOOK_URL_NOT_ALLOWED", details={"reason": reason})


@dataclass(frozen=True)
class Target:
    """Where a URL points: host and port to resolve."""

    host: str
    port: int


def check_url(url: str, *, mainnet: bool) -> Target:
    """An absolute http(s) URL without credentials (https only on mainnet); else 400 WEBHOOK_URL_NOT_ALLOWED."""
    if len(url) > URL_MAX or any(c.isspace() for c in url):
        raise url_refused("MALFORMED", f"url must be an absolute URL of at most {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise url_refused("MALFORMED", "url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise url_refused("SCHEME", "url must be an absolute http or https URL")
    if mainnet and parts.scheme != "https":
        raise url_refused("SCHEME", "url must use https on mainnet")
    if parts.username is not None or parts.password is not None:
        raise url_refused("CREDENTIALS", "url must not carry credentials; the signature authenticates us")
    if parts.fragment:
        raise url_refused("MALFORMED", "url must not carry a fragment")
    return Target(parts.hostname, port or (443 if parts.scheme == "https" else 80))


def blocked(address: str) -> bool:
    """Not a public unicast address: private, loopback, link-local, shared, reserved, multicast..."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def check_addresses(addresses: Iterable[str], *, allow_private: bool) -> list[str]:
    """The addresses to connect to: every one must be public unless private ones are allowed (one bad
    answer refuses the URL, so a DNS answer mixing public and internal addresses cannot slip through)."""
    found = list(dict.fromkeys(addresses))
    if not found:
        raise url_refused("UNRESOLVED", "the url's host does not resolve")
    if not allow_private and any(blocked(a) for a in found):
        raise url_refused("PRIVATE_ADDRESS", "the url resolves to a private, loopback or link-local address "
                                             "(WEBHOOKS_ALLOW_PRIVATE is off)")
    return found


def check_event_types(types: Sequence[str]) -> list[str]:
    """Filters named in the catalogue: ``*``, an exact type or ``family.*``; else UNKNOWN_EVENT_TYPE per entry."""
    problems = []
    for index, value in enumerate(types):
        family, _, rest = value.partition(".")
        known = (value == "*" or value in events.CATALOG or (rest == "*" and family in events.FAMILIES))
        if not known or value == "webhook.test":  # sent only by POST .../test, never by a filter
            problems.append({"field": f"eventTypes[{index}]", "code": "UNKNOWN_EVENT_TYPE",
                             "message": f"{value!r} is not an event type of the catalogue (or family.*)"})
    if problems:
        raise ValidationFailed(details={"fields": problems})
    return list(dict.fromkeys(types))


def check_limit(count: int, settings: Any) -> None:
    if count >= settings.webhooks_max_endpoints:
        raise BusinessRuleViolation(f"At most {settings.webhooks_max_endpoints} webhook endpoints per instance",
                                    code="WEBHOOK_ENDPOINT_LIMIT", details={"max": settings.webhooks_max_endpoints})


def not_found(endpoint_id: str) -> NotFound:
    return NotFound(f"Webhook endpoint {endpoint_id} not found", code="WEBHOOK_ENDPOINT_NOT_FOUND")


# --- the retry schedule --------------------------------------------------------------------------------

def next_attempt(settings: Any, *, failures: int, retry_from: datetime, now: datetime) -> datetime | None:
    """When to try again after ``failures`` failed attempts, or None once past the retry window."""
    schedule = settings.webhook_retry_schedule
    at = now + timedelta(seconds=schedule[min(failures, len(schedule)) - 1])
    if at > retry_from + timedelta(seconds=settings.webhook_retry_window_seconds):
        return None
    return at
