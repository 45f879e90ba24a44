"""A webhook whose svix-timestamp no float can hold is a stale signature (401), not a 500."""

from __future__ import annotations

import time

from tests.airtm.test_webhooks import post_webhook
from tests.fixtures.airtm import AirtmControl, AirtmInstance


def test_a_timestamp_beyond_any_float_is_refused_as_stale(airtm_instance: AirtmInstance, airtm: AirtmControl) -> None:
    secret = airtm.config()["webhookSecret"]
    body = {"type": "payin.created", "data": {"id": "00000000-0000-0000-0000-000000000000", "status": "CREATED"}}
    for stamp in (10**400, -(10**400)):
        reply = post_webhook(airtm_instance, secret, body, message_id=f"msg_{time.monotonic_ns()}", timestamp=stamp)
        assert reply.status_code == 401, reply.text  # was: 500 (OverflowError comparing it with the clock)
        assert reply.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"
