"""The sandbox's AirTM webhooks reach a real HTTP endpoint signed, retried and misbehaving as Svix does.

The receiver here checks signatures itself, from `providers.md` §3.8, and answers like the
orchestrator: `401` for a bad signature or a timestamp more than 5 minutes off.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.sandbox import SandboxControl
from tests.sandbox.test_airtm import Airtm, eventually, new_code

#: Receivers refuse timestamps further than this from their own clock (§3.8 step 5).
TOLERANCE_SECONDS = 300


@dataclass
class Delivery:
    """One POST as the receiver saw it."""

    svix_id: str
    timestamp: int
    payload: dict[str, Any]
    received_at: float
    signed: bool
    fresh: bool
    answered: int

    @property
    def code(self) -> str | None:
        return (self.payload.get("data") or {}).get("code")


def verify(secret: str, headers: Any, body: bytes) -> bool:
    """Svix verification written from the spec, independent of the sandbox's signer."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{headers['svix-id']}.{headers['svix-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    offered = [entry.partition(",")[2] for entry in headers["svix-signature"].split() if entry.startswith("v1,")]
    return any(hmac.compare_digest(expected, signature) for signature in offered)


class Receiver:
    """A webhook endpoint on 127.0.0.1 in its own thread, so tests stay synchronous."""

    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.deliveries: list[Delivery] = []
        self._failures: dict[str, int] = defaultdict(int)
        self._status = 500
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        self._ready.wait(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/webhooks/airtm"

    def fail(self, code: str, times: int, status: int = 500) -> None:
        """Answer `status` to the next `times` valid deliveries about `code`."""
        self._failures[code] = times
        self._status = status

    def about(self, code: str) -> list[Delivery]:
        return [d for d in list(self.deliveries) if d.code == code]

    def wait(self, code: str, count: int, timeout: float = 5) -> list[Delivery]:
        return eventually(lambda: self.about(code), lambda got: len(got) >= count, timeout)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/api/v1/webhooks/airtm", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify(self.secret, request.headers, body)
        timestamp = int(request.headers["svix-timestamp"])
        fresh = abs(time.time() - timestamp) <= TOLERANCE_SECONDS
        payload = json.loads(body)
        code = (payload.get("data") or {}).get("code", "")
        status = 200
        if not (signed and fresh):
            status = 401
        elif self._failures[code] > 0:
            self._failures[code] -= 1
            status = self._status
        self.deliveries.append(
            Delivery(request.headers["svix-id"], timestamp, payload, time.monotonic(), signed, fresh, status)
        )
        return web.json_response({"status": "ok"}, status=status)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def airtm(sandbox: SandboxControl, receiver: Receiver) -> Iterator[Airtm]:
    """The sandbox's AirTM, sending its webhooks to `receiver` on the default Svix time scale."""
    settings = {"webhookUrl": receiver.url, "webhookSecret": receiver.secret, "webhookTimeScale": 0.001}
    with Airtm(sandbox.base_url).borrowed(requestsPerSecond=0, payoutDelaySeconds=0.1, **settings) as client:
        yield client


def webhook_log(airtm: Airtm, code: str) -> list[dict[str, Any]]:
    return [m for m in airtm.control("GET", "/_sandbox/airtm/webhooks").json() if m["data"]["code"] == code]


def test_payin_status_changes_arrive_signed_as_type_and_full_data(airtm: Airtm, receiver: Receiver) -> None:
    buyer = airtm.seed_user()
    payin = airtm.create_payin(15).json()
    airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})

    created, confirmed = receiver.wait(payin["code"], 2)

    assert created.signed
    assert created.fresh
    assert confirmed.signed
    assert created.svix_id.startswith("msg_")
    assert created.svix_id != confirmed.svix_id
    assert created.payload == {"type": "payin.created", "data": payin}
    assert confirmed.payload == {"type": "payin.confirmed", "data": airtm.payin(payin["id"])}


def test_payout_webhooks_name_only_announced_statuses(airtm: Airtm, receiver: Receiver) -> None:
    user = airtm.seed_user()
    payout = airtm.create_payout(user["email"], 3, commit=True).json()

    deliveries = receiver.wait(payout["code"], 2)
    time.sleep(0.2)

    assert [d.payload["type"] for d in receiver.about(payout["code"])] == [
        "payout.created",
        "payout.completed",
    ]
    assert deliveries[1].payload["data"]["status"] == "COMPLETED"


def test_an_expiry_after_a_clock_advance_is_announced_with_a_fresh_timestamp(
    airtm: Airtm, receiver: Receiver, sandbox: SandboxControl
) -> None:
    payin = airtm.create_payin(5).json()

    sandbox.advance_clock(15 * 86400 + 1)
    _created, canceled = receiver.wait(payin["code"], 2)

    assert canceled.payload["type"] == "payin.canceled"
    assert canceled.payload["data"]["status"] == "CANCELED"
    assert canceled.fresh
    assert canceled.answered == 200


def test_failed_deliveries_are_retried_on_the_scaled_svix_schedule(airtm: Airtm, receiver: Receiver) -> None:
    code = new_code("topup")
    receiver.fail(code, 3)

    airtm.create_payin(5, code=code)
    attempts = receiver.wait(code, 4, timeout=8)

    gaps = [later.received_at - earlier.received_at for earlier, later in itertools.pairwise(attempts)]
    assert [a.answered for a in attempts] == [500, 500, 500, 200]
    assert len({a.svix_id for a in attempts}) == 1
    assert 0.3 * 0.9 <= gaps[1] < 0.3 + 0.5
    assert 1.8 * 0.95 <= gaps[2] < 1.8 + 0.5
    log = webhook_log(airtm, code)
    assert log[0]["status"] == "delivered"
    assert [a["result"] for a in log[0]["attempts"]] == [500, 500, 500, 200]


def test_a_message_is_given_up_after_the_last_scheduled_retry(airtm: Airtm, receiver: Receiver) -> None:
    airtm.configure(webhookTimeScale=0.00001)
    code = new_code("topup")
    receiver.fail(code, 100)

    airtm.create_payin(5, code=code)
    log = eventually(lambda: webhook_log(airtm, code), lambda got: got and got[0]["status"] == "failed")

    assert log[0]["status"] == "failed"
    assert len(log[0]["attempts"]) == 8
    assert len(receiver.about(code)) == 8


def test_a_duplicated_message_keeps_its_svix_id(airtm: Airtm, receiver: Receiver) -> None:
    code = new_code("topup")
    airtm.fault(service="webhooks", when={"code": code}, action="webhook_duplicate")

    airtm.create_payin(5, code=code)
    first, second = receiver.wait(code, 2)

    assert first.svix_id == second.svix_id
    assert first.payload == second.payload
    assert first.signed
    assert second.signed


def test_a_reordered_message_arrives_after_the_next_one(airtm: Airtm, receiver: Receiver) -> None:
    held, later = new_code("topup"), new_code("topup")
    airtm.fault(service="webhooks", when={"code": held}, action="webhook_reorder", params={"after": 1})

    airtm.create_payin(5, code=held)
    airtm.create_payin(5, code=later)
    receiver.wait(held, 1)

    order = [d.code for d in receiver.deliveries if d.code in (held, later)]
    assert order == [later, held]


def test_a_dropped_message_arrives_only_when_redelivered(airtm: Airtm, receiver: Receiver) -> None:
    code = new_code("topup")
    airtm.fault(service="webhooks", when={"code": code}, action="webhook_drop")

    airtm.create_payin(5, code=code)
    time.sleep(0.3)
    lost = webhook_log(airtm, code)[0]
    missing = receiver.about(code)
    redelivered = airtm.control("POST", f"/_sandbox/webhooks/{lost['id']}/redeliver")

    assert missing == []
    assert lost["status"] == "dropped"
    assert redelivered.status_code == 200
    assert redelivered.json()["status"] == "delivered"
    (delivery,) = receiver.about(code)
    assert delivery.svix_id == lost["id"]
    assert delivery.signed


def test_a_bad_signature_is_refused_then_the_retry_is_signed(airtm: Airtm, receiver: Receiver) -> None:
    code = new_code("topup")
    airtm.fault(service="webhooks", when={"code": code}, action="webhook_bad_signature")

    airtm.create_payin(5, code=code)
    bad, good = receiver.wait(code, 2)

    assert (bad.signed, bad.answered) == (False, 401)
    assert (good.signed, good.answered) == (True, 200)
    assert bad.svix_id == good.svix_id


def test_a_stale_timestamp_is_refused_then_the_retry_is_fresh(airtm: Airtm, receiver: Receiver) -> None:
    code = new_code("topup")
    airtm.fault(service="webhooks", when={"code": code}, action="webhook_stale")

    airtm.create_payin(5, code=code)
    stale, fresh = receiver.wait(code, 2)

    assert stale.signed
    assert not stale.fresh
    assert time.time() - stale.timestamp >= 590
    assert (fresh.fresh, fresh.answered) == (True, 200)
    assert stale.svix_id == fresh.svix_id


def test_the_legacy_body_carries_the_event_id_and_original_type(airtm: Airtm, receiver: Receiver) -> None:
    airtm.configure(webhookFormat="legacy")
    buyer = airtm.seed_user()
    payin = airtm.create_payin(8).json()
    airtm.act("payins", payin["id"], "confirm", {"email": buyer["email"]})

    deliveries = receiver.wait(payin["code"], 2)

    assert [d.payload["eventType"] for d in deliveries] == ["payin.created", "payin.succeeded"]
    assert deliveries[1].payload["eventId"] == deliveries[1].svix_id
    assert deliveries[1].payload["data"]["status"] == "CONFIRMED"
    assert deliveries[1].payload["data"]["amount"] == 8
