"""Verifying the orchestrator's signed webhooks in a receiver (DESIGN decision 28).

```python
from orchestrator.client import webhooks

event = webhooks.verify(os.environ["OFFERHUB_WEBHOOK_SECRET"], request.headers, raw_body)
```

The scheme is the Standard Webhooks specification 1.0.0 (github.com/standard-webhooks/standard-webhooks,
``spec/standard-webhooks.md``): HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{raw body}`` keyed
with the base64 part of the ``whsec_`` secret; ``webhook-signature`` holds one or more space-separated
``v1,<base64>`` signatures (two while a secret rotation overlaps), compared in constant time; a timestamp
further than ``tolerance`` seconds from now is refused (replays). Verify the raw bytes before parsing:
re-serialised JSON would not match. Deduplicate on ``webhook-id`` (the event id): a delivery may arrive
more than once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

PREFIX = "whsec_"


class WebhookVerificationError(Exception):
    """The request is not an authentic, fresh webhook of this endpoint: do not act on it (answer 400)."""


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """A ``v1,<base64>`` signature, as the orchestrator computes it (for tests and the CLI's forwarder)."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes | str, tolerance: int = 300) -> dict[str, Any]:
    """The event object, if one of ``webhook-signature``'s signatures is ``secret``'s and the timestamp is
    within ``tolerance`` seconds of now; else ``WebhookVerificationError``."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    message_id, stamp, signatures = (lowered.get(n) for n in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not message_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs(time.time() - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is outside the tolerance (a replay, or a skewed clock)")
    expected = sign(secret, message_id, timestamp, raw).split(",", 1)[1].encode()
    matched = False
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            matched = True  # no early exit: every entry costs the same
    if not matched:
        raise WebhookVerificationError("no signature matches the secret")
    try:
        event = json.loads(raw)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookVerificationError("the body is not an event object")
    return event


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not a whsec_ base64 secret") from None


__all__ = ["WebhookVerificationError", "sign", "verify"]
