"""Signed outbound webhooks end to end (issue 17): the API registers an endpoint, the relay creates the
delivery, the ``webhooks`` worker (a subprocess, as the Procfile runs it) POSTs it to a real receiver."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator import events
from orchestrator.client import webhooks as sdk
from tests.api import Api
from tests.webhooks.conftest import Receiver, eventually

pytestmark = pytest.mark.usefixtures("webhooks_worker")


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


async def endpoint(api: Api, url: str, *types: str, **extra: Any) -> dict[str, Any]:
    reply = await api.post("/webhooks/endpoints", {"url": url, "eventTypes": list(types), **extra})
    assert reply.status == 201, reply.body
    return reply.data


async def credit(api: Api, user_id: str, amount: str = "1.00") -> None:
    reply = await api.post(f"/users/{user_id}/balance/credit", {"amount": amount})
    assert reply.status == 200, reply.body


def credited_event(engine: Engine, user_id: str) -> Any:
    found = rows(engine, "SELECT * FROM outbox WHERE aggregate_id = :u AND event_type = 'balance.credited' "
                         "ORDER BY id DESC LIMIT 1", u=user_id)
    return found[0]


async def test_an_event_reaches_its_endpoint_signed_as_the_sse_object_and_the_sdk_verifies_it(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    # Given an endpoint that wants balance credits only
    created = await endpoint(api, receiver.url, "balance.credited", description="ledger sync")
    assert created["id"].startswith("whe_")
    assert created["secret"].startswith("whsec_")
    assert created["eventTypes"] == ["balance.credited"]
    assert created["enabled"] is True
    user = await api.user()
    # When a balance is credited
    await credit(api, user["id"])
    event = credited_event(engine, user["id"])
    got = await eventually(lambda: receiver.of(event.event_id), what="the delivery")
    # Then exactly that event arrives, signed per Standard Webhooks, with its stream position
    request, event = got[0], credited_event(engine, user["id"])  # read again: now numbered
    verified = sdk.verify(created["secret"], request.headers, request.body)
    sse_object = {"eventId": event.event_id, "eventType": "balance.credited",
                  "occurredAt": events.iso(event.occurred_at), "aggregateId": user["id"],
                  "aggregateType": "Balance", "payload": event.payload, "metadata": event.metadata}
    assert verified == sse_object
    assert request.body == json.dumps(sse_object).encode()  # byte for byte the SSE data line
    assert request.headers["webhook-id"] == event.event_id
    assert request.headers["OfferHub-Event-Position"] == str(event.position)
    assert request.headers["webhook-signature"].startswith("v1,")
    assert " " not in request.headers["webhook-signature"]
    # and nothing the filter leaves out (user.created, wallet.created) was sent
    assert {json.loads(r.body)["eventType"] for r in receiver.requests} == {"balance.credited"}
    # and the delivery is listed as succeeded with its attempt
    listed = await eventually(lambda: _succeeded(api, created["id"]), what="the delivery to be recorded")
    assert listed[0]["eventId"] == event.event_id
    assert listed[0]["position"] == event.position
    assert listed[0]["attempts"][0]["statusCode"] == 200
    assert listed[0]["attempts"][0]["responseExcerpt"] == '{"ok":true}'
    # and a tampered body, a wrong secret or an old timestamp do not verify
    for bad_body, secret, headers in (
            (request.body + b" ", created["secret"], request.headers),
            (request.body, sdk.PREFIX + "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", request.headers),
            (request.body, created["secret"], {**request.headers, "webhook-timestamp": "1000"}),
            (request.body, created["secret"], {k: v for k, v in request.headers.items() if k != "webhook-id"})):
        with pytest.raises(sdk.WebhookVerificationError):
            sdk.verify(secret, headers, bad_body)


async def _succeeded(api: Api, endpoint_id: str) -> list[dict[str, Any]]:
    reply = await api.get(f"/webhooks/endpoints/{endpoint_id}/deliveries?status=SUCCEEDED")
    assert reply.status == 200, reply.body
    return reply.data


async def test_rotation_signs_with_both_secrets_during_the_overlap_then_with_the_new_one_only(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    created = await endpoint(api, receiver.url, "balance.*")
    user = await api.user()
    # When the secret is rotated with an overlap window
    rotated = await api.post(f"/webhooks/endpoints/{created['id']}/rotate-secret", {"overlapSeconds": 3600})
    assert rotated.status == 200, rotated.body
    new_secret = rotated.data["secret"]
    assert new_secret != created["secret"]
    await credit(api, user["id"])
    first = credited_event(engine, user["id"]).event_id
    request = (await eventually(lambda: receiver.of(first), what="the delivery"))[0]
    # Then both signatures travel, space-separated, and each secret verifies
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert sdk.verify(new_secret, request.headers, request.body)["eventId"] == first
    assert sdk.verify(created["secret"], request.headers, request.body)["eventId"] == first
    # When it is rotated again without overlap, only the newest secret signs
    again = await api.post(f"/webhooks/endpoints/{created['id']}/rotate-secret", {"overlapSeconds": 0})
    await credit(api, user["id"])
    second = credited_event(engine, user["id"]).event_id
    request = (await eventually(lambda: receiver.of(second), what="the second delivery"))[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 1
    assert sdk.verify(again.data["secret"], request.headers, request.body)["eventId"] == second
    with pytest.raises(sdk.WebhookVerificationError):
        sdk.verify(new_secret, request.headers, request.body)
    # and the secret is sealed at rest: the stored row never holds it
    stored = rows(engine, "SELECT secret::text, previous_secret::text FROM webhook_endpoints WHERE id = :e",
                  e=created["id"])[0]
    assert again.data["secret"] not in str(stored)
    assert "whsec_" not in str(stored)


async def test_failures_retry_on_the_schedule_without_blocking_later_deliveries(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    created = await endpoint(api, receiver.url, "balance.credited")
    user = await api.user()
    failures = [500, 503]  # the first two attempts of the 1.00 credit fail

    def rule(received: Any) -> int | None:
        if json.loads(received.body)["payload"]["amount"] == "1.00" and failures:
            return failures.pop(0)
        return None

    receiver.rule = rule
    await credit(api, user["id"], "1.00")
    failing = credited_event(engine, user["id"]).event_id
    await eventually(lambda: len(receiver.of(failing)) >= 1, what="the first attempt")
    # When another event follows while the first waits for its retry
    await credit(api, user["id"], "2.00")
    later = credited_event(engine, user["id"]).event_id
    # Then the later one is delivered before the failing one succeeds
    await eventually(lambda: receiver.of(later), what="the later delivery")
    await eventually(lambda: len(receiver.of(failing)) == 3, seconds=30, what="two retries")
    assert receiver.of(later)[0].at < receiver.of(failing)[2].at
    await eventually(lambda: rows(engine, "SELECT status FROM webhook_deliveries WHERE event_id = :e AND "
                                          "endpoint_id = :p", e=failing, p=created["id"])[0][0] == "SUCCEEDED",
                     what="the success to be recorded")  # the receiver answers before the worker records
    # And the attempts follow the schedule the worker was given (1 s, then 2 s), each recorded
    attempts = rows(engine, "SELECT a.status_code, a.succeeded, a.next_attempt_at, a.attempted_at, a.latency_ms "
                            "FROM webhook_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id "
                            "WHERE d.event_id = :e AND d.endpoint_id = :p ORDER BY a.id", e=failing, p=created["id"])
    assert [(a.status_code, a.succeeded) for a in attempts] == [(500, False), (503, False), (200, True)]
    assert attempts[0].next_attempt_at - attempts[0].attempted_at == timedelta(seconds=1)
    assert attempts[1].next_attempt_at - attempts[1].attempted_at == timedelta(seconds=2)
    assert attempts[2].next_attempt_at is None
    assert all(a.latency_ms >= 0 for a in attempts)
    times = [r.at for r in receiver.of(failing)]
    assert times[1] - times[0] >= 0.9
    assert times[2] - times[1] >= 1.9
    delivery = rows(engine, "SELECT status, attempts FROM webhook_deliveries WHERE event_id = :e AND endpoint_id = :p",
                    e=failing, p=created["id"])[0]
    assert tuple(delivery) == ("SUCCEEDED", 3)


async def test_an_endpoint_answering_410_is_disabled_with_an_event_and_an_audit_entry(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    created = await endpoint(api, receiver.url, "balance.credited")
    user = await api.user()
    receiver.status = 410
    await credit(api, user["id"])
    reply = await eventually(lambda: _disabled(api, created["id"]), what="the endpoint to be disabled")
    assert reply["disabledReason"] == "GONE"
    disabled = rows(engine, "SELECT payload FROM outbox WHERE event_type = 'webhook_endpoint.disabled' "
                            "AND aggregate_id = :e", e=created["id"])
    assert [d.payload for d in disabled] == [{"endpointId": created["id"], "url": receiver.url, "reason": "GONE"}]
    assert rows(engine, "SELECT count(*) FROM audit_log WHERE action = 'webhook_endpoint.disabled' "
                        "AND resource_id = :e", e=created["id"])[0][0] == 1
    # and a disabled endpoint gets no new deliveries
    before = len(receiver.requests)
    await credit(api, user["id"])
    await credit(api, user["id"])
    await eventually(lambda: rows(engine, "SELECT count(*) FROM outbox WHERE aggregate_id = :u AND "
                                          "event_type = 'balance.credited' AND position IS NOT NULL",
                                  u=user["id"])[0][0] == 3, what="the credits to be numbered")
    assert rows(engine, "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :e", e=created["id"])[0][0] == 1
    assert len(receiver.requests) == before
    # When the operator turns it back on, the delivery that met the 410 goes out at once
    receiver.status = 200
    enabled = await api.call("PATCH", f"/webhooks/endpoints/{created['id']}", json={"enabled": True})
    assert enabled.data["enabled"] is True
    await eventually(lambda: rows(engine, "SELECT status FROM webhook_deliveries WHERE endpoint_id = :e",
                                  e=created["id"])[0][0] == "SUCCEEDED", what="the resumed delivery")
    assert len(receiver.requests) == before + 1


async def _disabled(api: Api, endpoint_id: str) -> dict[str, Any] | None:
    reply = await api.get(f"/webhooks/endpoints/{endpoint_id}")
    return None if reply.data["enabled"] else reply.data


async def test_an_endpoint_failing_for_three_days_is_disabled_and_an_old_delivery_is_given_up(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    created = await endpoint(api, receiver.url, "balance.credited")
    user = await api.user()
    # Given an endpoint whose last success is over three days old and a delivery that began as long ago
    with engine.begin() as conn:
        conn.execute(text("UPDATE webhook_endpoints SET failing_since = now() - interval '3 days 1 second' "
                          "WHERE id = :e"), {"e": created["id"]})
    receiver.status = 500
    await credit(api, user["id"])
    event_id = credited_event(engine, user["id"]).event_id
    # When its next attempt fails too
    reply = await eventually(lambda: _disabled(api, created["id"]), what="the endpoint to be disabled")
    # Then it is disabled with the event and the audit entry
    assert reply["disabledReason"] == "FAILING"
    assert rows(engine, "SELECT count(*) FROM outbox WHERE event_type = 'webhook_endpoint.disabled' "
                        "AND aggregate_id = :e", e=created["id"])[0][0] == 1
    assert len(receiver.of(event_id)) == 1
    # And a delivery whose retry window has run out is given up after its next failure
    with engine.begin() as conn:
        conn.execute(text("UPDATE webhook_endpoints SET enabled = true, disabled_reason = NULL WHERE id = :e"),
                     {"e": created["id"]})
        conn.execute(text("UPDATE webhook_deliveries SET retry_from = now() - interval '3 days', "
                          "next_attempt_at = now() WHERE event_id = :v"), {"v": event_id})
    from actors.webhooks import deliver_webhooks
    deliver_webhooks.send(created["id"])
    await eventually(lambda: rows(engine, "SELECT status FROM webhook_deliveries WHERE event_id = :v",
                                  v=event_id)[0][0] == "FAILED", what="the delivery to be given up")
    assert len(receiver.of(event_id)) == 2


async def test_the_worker_refuses_a_private_destination_when_not_allowed(
        webhooks_worker: subprocess.Popen[bytes], receiver: Receiver) -> None:
    from orchestrator.outbox import webhook_delivery

    for url in (receiver.url, f"http://localhost:{receiver.port}/hooks", f"http://[::1]:{receiver.port}/hooks"):
        refused = await asyncio.to_thread(webhook_delivery.post, url, {}, b"{}", timeout=2, allow_private=False)
        assert refused.status is None, url
        assert (refused.error or "").startswith("PRIVATE_ADDRESS"), url
    assert receiver.requests == []
    # the same call with private destinations allowed reaches the receiver (the worker runs it in a thread)
    allowed = await asyncio.to_thread(webhook_delivery.post, receiver.url, {}, b"{}", timeout=2, allow_private=True)
    assert allowed.status == 200
    assert len(receiver.requests) == 1


async def test_each_attempt_of_a_thread_checks_its_destination_and_connects_anew(receiver: Receiver) -> None:
    """A worker thread keeps its event loop and HTTP session across attempts; the check still runs per
    attempt (a refusal between two allowed attempts to the same receiver), and no connection is kept for
    the next attempt, which connects to the addresses it checked itself."""
    from orchestrator.outbox import webhook_delivery

    def three_attempts() -> list[Any]:
        return [webhook_delivery.post(url, {}, b"{}", timeout=2, allow_private=allowed)
                for url, allowed in ((receiver.url, True), (f"http://localhost:{receiver.port}/hooks", False),
                                     (f"http://localhost:{receiver.port}/hooks", True))]

    first, refused, third = await asyncio.to_thread(three_attempts)
    assert (first.status, third.status) == (200, 200)
    assert refused.status is None
    assert (refused.error or "").startswith("PRIVATE_ADDRESS")
    assert len(receiver.requests) == 2
    assert receiver.requests[0].peer != receiver.requests[1].peer  # two connections, none reused


async def test_a_slow_or_huge_answer_costs_at_most_the_timeout_and_4kb_and_redirects_are_not_followed(
        receiver: Receiver) -> None:
    from orchestrator.outbox import webhook_delivery

    def post(timeout: float) -> Any:
        return webhook_delivery.post(receiver.url, {}, b"{}", timeout=timeout, allow_private=True)

    receiver.answer = b"x" * 1_000_000
    huge = await asyncio.to_thread(post, 5)
    assert huge.status == 200
    assert len(huge.excerpt or "") == 4096
    receiver.answer, receiver.delay = b"late", 3.0
    slow = await asyncio.to_thread(post, 1)
    assert slow.status is None
    assert "no answer within 1 s" in (slow.error or "")
    assert 900 <= slow.latency_ms < 2500
    receiver.delay, receiver.status = 0.0, 302
    moved = await asyncio.to_thread(post, 5)
    assert moved.status == 302
    assert not moved.ok
    assert len(receiver.requests) == 3


async def test_a_healthy_endpoint_receives_events_in_stream_order(
        api: Api, engine: Engine, receiver: Receiver) -> None:
    from orchestrator import ids
    from orchestrator.unit_of_work import Context, UnitOfWork

    await endpoint(api, receiver.url, "user.created")
    tag = "usr_ord" + ids.new_id("command")[4:10]
    for n in range(30):  # thirty commits, relayed in however many passes
        with UnitOfWork(engine, Context(actor_type="SYSTEM")) as uow:
            uow.emit("user.created", f"{tag}{n:02d}", {"userId": f"{tag}{n:02d}"})
            uow.commit()
    from actors.outbox import relayer
    relayer.request()

    def ours() -> list[Any]:
        return [r for r in receiver.requests if json.loads(r.body)["aggregateId"].startswith(tag)]

    await eventually(lambda: len(ours()) == 30, what="thirty deliveries")
    positions = [int(r.headers["OfferHub-Event-Position"]) for r in ours()]
    assert positions == sorted(positions)
    assert [json.loads(r.body)["aggregateId"] for r in ours()] == [f"{tag}{n:02d}" for n in range(30)]
