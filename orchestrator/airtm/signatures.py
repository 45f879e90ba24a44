"""Svix webhook signatures as AirTM sends them (spec providers.md §3.8, steps 1-6).

HMAC-SHA256 keyed with the base64 secret after ``whsec_``, over ``{id}.{timestamp}.{raw body}``;
accepted when any ``v1,`` entry matches (constant time) and the timestamp is within five minutes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from orchestrator.errors import Unauthorized

TOLERANCE_SECONDS = 300


def _header(headers: Mapping[str, str], name: str) -> str:
    return headers.get(f"svix-{name}") or headers.get(f"webhook-{name}") or ""


def message_id(headers: Mapping[str, str]) -> str:
    return _header(headers, "id")


def _invalid(reason: str) -> Unauthorized:
    return Unauthorized(f"Webhook signature invalid: {reason}", code="WEBHOOK_SIGNATURE_INVALID",
                        details={"reason": reason})


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
    """The message id when the signature and timestamp are good; ``401 WEBHOOK_SIGNATURE_INVALID`` otherwise."""
    msg_id, stamp, signatures = message_id(headers), _header(headers, "timestamp"), _header(headers, "signature")
    if not (msg_id and stamp and signatures):
        raise _invalid("missing svix-id, svix-timestamp or svix-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise _invalid("svix-timestamp is not a number") from None
    if abs(int(now) - timestamp) > TOLERANCE_SECONDS:  # ints: a 400-digit stamp cannot overflow a float
        raise _invalid("svix-timestamp is more than 5 minutes from now")
    try:
        expected = sign(secret, msg_id, timestamp, body).encode()
    except (binascii.Error, ValueError):
        raise _invalid("the configured secret is not a whsec_ base64 secret") from None
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise _invalid("no v1 signature matches")
