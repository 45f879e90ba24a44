"""The webhook endpoint API (DESIGN decisions 28, 36): validation, SSRF refusal, the limit, scopes,
maintenance, and the delivery routes (list, retry, replay, test) against a real receiver."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import dramatiq
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import Engine, text

from orchestrator.settings import Settings
from tests.api import Api
from tests.webhooks.conftest import Receiver, eventually
from web.app import create_app

GOOD = "http://127.0.0.1:9/hooks"


@pytest.fixture
async def strict_api(aiohttp_client: Any, settings: Settings, worker: dramatiq.Worker, master_key: str) -> Api:
    """The API of an instance as production runs it: private destinations refused, at most 2 endpoints."""
    strict = dataclasses.replace(settings, webhooks_allow_private=False, webhooks_max_endpoints=2)
    client: TestClient = await aiohttp_client(create_app(strict))
    return Api(client, master_key)


def field_codes(reply: Any) -> list[tuple[str, str]]:
    return [(f["field"], f["code"]) for f in reply.error["details"]["fields"]]


async def test_private_loopback_and_link_local_destinations_are_refused_unless_allowed(strict_api: Api) -> None:
    for url in ("http://127.0.0.1:8080/hooks", "http://localhost/hooks", "http://169.254.169.254/latest/meta-data",
                "http://10.1.2.3/x", "http://192.168.0.10/x", "http://[::1]/x", "http://[fe80::1]/x",
                "http://0.0.0.0/x", "http://[::ffff:127.0.0.1]/x", "http://100.64.0.1/x"):
        reply = await strict_api.post("/webhooks/endpoints", {"url": url})
        assert reply.status == 400, (url, reply.body)
        assert reply.error["code"] == "WEBHOOK_URL_NOT_ALLOWED", url
        assert reply.error["details"]["reason"] == "PRIVATE_ADDRESS", url


async def test_bad_urls_and_unknown_event_types_are_the_specs_errors(api: Api) -> None:
    for url, reason in (("ftp://example.com/x", "SCHEME"), ("not a url", "MALFORMED"), ("/relative", "SCHEME"),
                        ("http://user:pw@127.0.0.1/x", "CREDENTIALS"), ("http://127.0.0.1:99999/x", "MALFORMED"),
                        ("http://no-such-host.invalid/x", "UNRESOLVED"), ("https://" + "a" * 2100, "MALFORMED")):
        reply = await api.post("/webhooks/endpoints", {"url": url})
        assert reply.status == 400, (url, reply.body)
        assert reply.error["code"] in ("WEBHOOK_URL_NOT_ALLOWED", "VALIDATION_ERROR"), url
        if reply.error["code"] == "WEBHOOK_URL_NOT_ALLOWED":
            assert reply.error["details"]["reason"] == reason, url
    reply = await api.post("/webhooks/endpoints", {"url": GOOD, "eventTypes": ["order.*", "nope.created", "bogus.*",
                                                                             "order.created", "webhook.test"]})
    assert reply.status == 400
    assert field_codes(reply) == [("eventTypes[1]", "UNKNOWN_EVENT_TYPE"), ("eventTypes[2]", "UNKNOWN_EVENT_TYPE"),
                                  ("eventTypes[4]", "UNKNOWN_EVENT_TYPE")]
    for body, expected in (({}, [("url", "MISSING_REQUIRED_FIELD")]),
                           ({"url": GOOD, "eventTypes": "order.*"}, [("eventTypes", "INVALID_TYPE")]),
                           ({"url": GOOD, "enabled": "yes"}, [("enabled", "INVALID_TYPE")]),
                           ({"url": GOOD, "secret": "mine"}, [("secret", "UNKNOWN_FIELD")])):
        reply = await api.post("/webhooks/endpoints", body)
        assert reply.status == 400, body
        assert field_codes(reply) == expected, body


async def test_the_endpoint_limit_and_the_scopes(strict_api: Api, api: Api) -> None:
    reader, support = await api.key("read"), await api.key("support")
    # `read` lists but cannot write; `support` writes
    denied = await strict_api.as_(reader).post("/webhooks/endpoints", {"url": "https://93.184.215.14/hooks"})
    assert denied.status == 403
    assert denied.error["code"] == "INSUFFICIENT_SCOPE"
    for _ in range(2):
        made = await strict_api.as_(support).post("/webhooks/endpoints", {"url": "https://93.184.215.14/hooks"})
        assert made.status == 201, made.body
    listed = await strict_api.as_(reader).get("/webhooks/endpoints")
    assert listed.status == 200
    assert len(listed.data) == 2
    assert all("secret" not in e for e in listed.data)
    # a third is over the limit of 2
    over = await strict_api.as_(support).post("/webhooks/endpoints", {"url": "https://93.184.215.14/hooks"})
    assert over.status == 422
    assert over.error["code"] == "WEBHOOK_ENDPOINT_LIMIT"
    assert over.error["details"] == {"max": 2}


async def test_update_delete_and_not_found(api: Api, engine: Engine) -> None:
    made = (await api.post("/webhooks/endpoints", {"url": GOOD, "eventTypes": ["order.*"]})).data
    path = f"/webhooks/endpoints/{made['id']}"
    changed = await api.call("PATCH", path, json={"eventTypes": ["balance.credited"], "description": "books",
                                                  "enabled": False})
    assert changed.status == 200, changed.body
    assert changed.data["eventTypes"] == ["balance.credited"]
    assert changed.data["enabled"] is False
    assert changed.data["disabledReason"] == "OPERATOR"
    with engine.connect() as conn:
        event = conn.execute(text("SELECT payload FROM outbox WHERE event_type = 'webhook_endpoint.disabled' "
                                  "AND aggregate_id = :e"), {"e": made["id"]}).scalar_one()
    assert event == {"endpointId": made["id"], "url": GOOD, "reason": "OPERATOR"}
    enabled = await api.call("PATCH", path, json={"enabled": True})
    assert enabled.data["enabled"] is True
    assert enabled.data["disabledReason"] is None
    bad = await api.call("PATCH", path, json={"url": "gopher://x"})
    assert bad.status == 400
    assert bad.error["code"] == "WEBHOOK_URL_NOT_ALLOWED"
    deleted = await api.delete(path)
    assert deleted.status == 200
    for method, route in (("GET", path), ("PATCH", path), ("DELETE", path), ("POST", f"{path}/test"),
                          ("GET", f"{path}/deliveries"), ("GET", "/webhooks/endpoints/ord_nope"),
                          ("POST", f"{path}/rotate-secret")):
        reply = await api.call(method, route, json={} if method != "GET" else None)
        assert reply.status == 404, (method, route)
        assert reply.error["code"] == "WEBHOOK_ENDPOINT_NOT_FOUND", (method, route)
    missing = await api.post("/webhooks/deliveries/whd_nope/retry")
    assert missing.status == 404


async def test_maintenance_blocks_endpoint_management_but_not_inbound_provider_webhooks(api: Api) -> None:
    assert (await api.post("/admin/maintenance/enable", {"message": "upgrade"})).status == 200
    try:
        reply = await api.post("/webhooks/endpoints", {"url": GOOD})
        assert reply.status == 503
        assert reply.error["code"] == "MAINTENANCE_MODE"
        inbound = await api.post("/webhooks/airtm", {})
        assert inbound.status != 503
    finally:
        assert (await api.post("/admin/maintenance/disable")).status == 200


@pytest.mark.usefixtures("webhooks_worker")
async def test_test_retry_replay_and_the_deliveries_list(api: Api, engine: Engine, receiver: Receiver) -> None:
    user = await api.user()
    # events positioned before the endpoint exists: a credit's answer comes when its command is done, and
    # the relay numbers its event a moment later (its passes are at least 50 ms apart under load)
    for amount in ("1.00", "2.00", "3.00"):
        assert (await api.post(f"/users/{user['id']}/balance/credit", {"amount": amount})).status == 200

    def relayed() -> bool:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM outbox WHERE aggregate_id = :u AND position IS NOT NULL "
                                     "AND event_type = 'balance.credited'"), {"u": user["id"]}).scalar() == 3

    await eventually(relayed, what="the credits' events to be relayed")
    with engine.connect() as conn:
        since = conn.execute(text("SELECT min(relayed_at) - interval '1 millisecond' FROM outbox "
                                  "WHERE aggregate_id = :u AND event_type = 'balance.credited'"),
                             {"u": user["id"]}).scalar_one()
        earlier = set(conn.execute(text("SELECT event_id FROM outbox WHERE aggregate_id = :u AND "
                                        "event_type = 'balance.credited'"), {"u": user["id"]}).scalars())
    made = (await api.post("/webhooks/endpoints", {"url": receiver.url, "eventTypes": ["balance.credited"]})).data
    path = f"/webhooks/endpoints/{made['id']}"
    # POST …/test: a webhook.test event to this endpoint only (never in the outbox)
    tested = await api.post(f"{path}/test")
    assert tested.status == 202, tested.body
    test_id = tested.data["eventId"]
    got = await eventually(lambda: receiver.of(test_id), what="the test event")
    body = json.loads(got[0].body)
    assert body["eventType"] == "webhook.test"
    assert body["payload"] == {"endpointId": made["id"]}
    assert "OfferHub-Event-Position" not in got[0].headers
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE event_id = :e"), {"e": test_id}).scalar() == 0
    # replay since before the credits: the endpoint never had them, so they are created and sent
    replayed = await api.post(f"{path}/replay", {"since": since.isoformat()})
    assert replayed.status == 202, replayed.body
    assert replayed.data["created"] >= 3
    await eventually(lambda: earlier <= receiver.ids(), what="the replayed events")

    def recorded() -> bool:  # the receiver answers before the worker records the success
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = :e AND "
                                     "status = 'SUCCEEDED'"), {"e": made["id"]}).scalar_one() >= len(earlier) + 1

    await eventually(recorded, what="the successes to be recorded")
    # the list: cursor pages, newest first, with the status filter
    first = await api.get(f"{path}/deliveries?limit=2&status=SUCCEEDED")
    assert first.status == 200
    pagination = first.body["meta"]["pagination"]
    assert len(first.data) == 2
    assert pagination["hasMore"] is True
    rest = await api.get(f"{path}/deliveries?limit=100&cursor={pagination['nextCursor']}")
    listed = [*first.data, *rest.data]
    assert {d["eventId"] for d in listed} >= {*earlier, test_id}
    assert all(d["status"] == "SUCCEEDED" and d["attempts"][0]["statusCode"] == 200 for d in listed)
    assert (await api.get(f"{path}/deliveries?status=FAILED")).data == []
    assert (await api.get(f"{path}/deliveries?status=nope")).status == 400
    assert (await api.get(f"{path}/deliveries?cursor=whd_unknown")).status == 400
    # a manual retry sends a succeeded delivery again (same webhook-id: receivers deduplicate)
    one = listed[-1]
    before = len(receiver.of(one["eventId"]))
    retried = await api.post(f"/webhooks/deliveries/{one['id']}/retry")
    assert retried.status == 202
    assert retried.data["status"] == "PENDING"
    await eventually(lambda: len(receiver.of(one["eventId"])) == before + 1, what="the manual retry")
    # replaying the same range again re-queues the existing deliveries and creates none
    again = await api.post(f"{path}/replay", {"since": since.isoformat(), "until": "2999-01-01T00:00:00Z"})
    assert again.data["created"] == 0
    assert again.data["requeued"] >= 3
    bad = await api.post(f"{path}/replay", {"since": "yesterday"})
    assert bad.status == 400


async def test_the_secret_is_shown_once_never_stored_in_clear_nor_replayed(api: Api, engine: Engine) -> None:
    key = {"Idempotency-Key": "2f1c9a1e-6a51-4c55-9d0e-3d5a2c1b7e10"}
    made = await api.post("/webhooks/endpoints", {"url": GOOD}, headers=key)
    assert made.status == 201
    secret = made.data["secret"]
    replayed = await api.post("/webhooks/endpoints", {"url": GOOD}, headers=key)
    assert replayed.headers["Idempotency-Replay"] == "true"
    assert replayed.data["id"] == made.data["id"]
    assert replayed.data["secret"] == "***REDACTED***"
    read = await api.get(f"/webhooks/endpoints/{made.data['id']}")
    assert "secret" not in read.data
    with engine.connect() as conn:
        for table in ("idempotency_keys", "audit_log", "webhook_endpoints", "outbox"):
            stored = "\n".join(conn.execute(text(f"SELECT t::text FROM {table} t")).scalars())
            assert secret not in stored, table
            assert secret.removeprefix("whsec_") not in stored, table


async def test_a_wallet_key_rotation_reseals_webhook_secrets_too(api: Api, engine: Engine, settings: Settings) -> None:
    import base64
    import secrets as random

    from orchestrator import crypto
    from orchestrator.outbox import webhooks

    made = (await api.post("/webhooks/endpoints", {"url": GOOD})).data
    rotated = (await api.post(f"/webhooks/endpoints/{made['id']}/rotate-secret", {"overlapSeconds": 60})).data
    new_key = base64.b64encode(random.token_bytes(32)).decode()
    ring = crypto.Keyring.from_settings(new_key, settings.wallet_encryption_key)
    assert webhooks.reseal_all(engine, ring) == (1, 0, [])
    with engine.connect() as conn:
        secret, previous = conn.execute(text("SELECT secret, previous_secret FROM webhook_endpoints WHERE id = :e"),
                                        {"e": made["id"]}).one()
    only_new = crypto.Keyring.from_settings(new_key)
    assert webhooks.unseal(only_new, secret, made["id"]) == rotated["secret"]
    assert webhooks.unseal(only_new, previous, made["id"]) == made["secret"]
    assert webhooks.reseal_all(engine, ring) == (0, 1, [])
    # a key that opens nothing names the endpoint instead of failing
    stranger = crypto.Keyring.from_settings(base64.b64encode(random.token_bytes(32)).decode())
    assert webhooks.reseal_all(engine, stranger) == (0, 0, [made["id"]])


def test_the_sdk_manages_endpoints(server_url: str, master_key: str) -> None:
    from orchestrator.client import Client, NotFoundError, ValidationError

    with Client(server_url, master_key) as client:
        made = client.webhooks.create_endpoint(url=GOOD, event_types=["order.*"], description="sdk")
        assert made["secret"].startswith("whsec_")
        assert client.webhooks.get_endpoint(made["id"])["description"] == "sdk"
        assert made["id"] in [e["id"] for e in client.webhooks.iterate_endpoints()]
        assert client.webhooks.update_endpoint(made["id"], enabled=False)["disabledReason"] == "OPERATOR"
        assert client.webhooks.rotate_secret(made["id"], overlap_seconds=0)["secret"] != made["secret"]
        assert client.webhooks.list_deliveries(made["id"], status="FAILED").items == []
        with pytest.raises(ValidationError) as refused:
            client.webhooks.create_endpoint(url=GOOD, event_types=["nope.*"])
        assert refused.value.details["fields"][0]["code"] == "UNKNOWN_EVENT_TYPE"
        client.webhooks.delete_endpoint(made["id"])
        with pytest.raises(NotFoundError):
            client.webhooks.get_endpoint(made["id"])
