"""Health, configuration, request ids, maintenance and rate limits (spec api.md §1.8, §1.11, §1.13, §3)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, text

from orchestrator.payments.deposits import STREAM_CURSOR
from orchestrator.settings import AmountLimits, Settings
from tests.api import Api, unique
from tests.fixtures.sandbox import SandboxControl
from tests.web.test_errors import assert_error, field_errors, new_key
from tests.web.test_users import ISO_MS
from web.app import create_app

SEMVER = re.compile(r"\d+\.\d+\.\d+")
STATUSES = {"healthy", "degraded", "unhealthy"}


async def app_with(aiohttp_client: Any, settings: Settings, credential: str, **changes: Any) -> Api:
    """A second application on its own socket, configured differently (configuration, not mocking)."""
    return Api(await aiohttp_client(create_app(dataclasses.replace(settings, **changes))), credential)


async def test_health_is_public_and_healthy(api: Api) -> None:
    async with api.client.get("/api/v1/health") as resp:
        body = await resp.json()
    assert resp.status == 200
    assert body["data"]["status"] == "healthy"
    assert SEMVER.fullmatch(body["data"]["version"])
    assert ISO_MS.fullmatch(body["data"]["timestamp"])
    assert body["meta"]["requestId"] == resp.headers["X-Request-ID"]


async def test_detailed_health_checks_the_infrastructure(api: Api) -> None:
    async with api.client.get("/api/v1/health/detailed") as resp:
        body = await resp.json()
    data = body["data"]
    dependencies = data["dependencies"]
    assert set(dependencies) == {"database", "redis", "rabbitmq", "airtm", "trustlessWork", "horizon"}
    for name in ("database", "redis", "rabbitmq"):
        assert dependencies[name]["status"] == "healthy", (name, dependencies[name])
        assert isinstance(dependencies[name]["latency"], int | float)
        assert dependencies[name]["latency"] >= 0
    for name in ("airtm", "trustlessWork", "horizon"):
        assert dependencies[name]["status"] in STATUSES
        if dependencies[name]["status"] != "healthy":
            assert isinstance(dependencies[name]["error"], str)
    waiting = data["operations"]
    assert set(waiting) == {"monitor", "oldestPendingCommand", "oldestOpenChainStep"}
    for check in waiting.values():
        assert check["status"] in ("healthy", "degraded")
        assert check["thresholdSeconds"] > 0
    statuses = {d["status"] for d in (*dependencies.values(), *waiting.values())}
    expected = "unhealthy" if "unhealthy" in statuses else "degraded" if "degraded" in statuses else "healthy"
    assert data["status"] == expected
    assert resp.status == (503 if expected == "unhealthy" else 200)
    assert SEMVER.fullmatch(data["version"])
    assert isinstance(data["backlog"]["outboxUnrelayed"], int)
    assert isinstance(data["backlog"]["commandsPending"], int)
    assert data["backlog"]["outboxUnrelayed"] >= 0


@contextlib.contextmanager
def monitor_cursor(engine: Engine, value: str) -> Iterator[None]:
    """The monitor's stream cursor set to ``value`` for a while, then put back as it was."""
    with engine.begin() as conn:
        before = conn.execute(text("SELECT value FROM cursors WHERE name = :n"), {"n": STREAM_CURSOR}).scalar()
        conn.execute(text("INSERT INTO cursors (name, value) VALUES (:n, :v) ON CONFLICT (name) DO UPDATE "
                          "SET value = excluded.value"), {"n": STREAM_CURSOR, "v": value})
    try:
        yield
    finally:
        with engine.begin() as conn:
            if before is None:
                conn.execute(text("DELETE FROM cursors WHERE name = :n"), {"n": STREAM_CURSOR})
            else:
                conn.execute(text("UPDATE cursors SET value = :v WHERE name = :n"), {"n": STREAM_CURSOR, "v": before})


async def test_scrapes_in_a_row_read_horizon_once_per_figure(api: Api, engine: Engine,
                                                             ledger: SandboxControl) -> None:
    """Public Horizon allows 3,600 requests an hour (DESIGN decision 12): public scrapes must not spend it."""
    counted = {"service": "horizon", "method": "GET", "action": "delay", "params": {"ms": 0}, "times": 0}
    with monitor_cursor(engine, "now"):
        # Given counters on Horizon's payments read (the monitor's lag) and its root (the health probe)
        lag_reads = ledger.add_fault(path="/payments", **counted)["id"]
        probes = ledger.add_fault(path="/", **counted)["id"]
        try:
            # When /health/detailed, /metrics and /health/detailed again are scraped in a row
            async with api.client.get("/api/v1/health/detailed") as resp:
                first = (await resp.json())["data"]
            async with api.client.get("/metrics") as resp:
                assert resp.status == 200
                exposition = await resp.text()
            async with api.client.get("/api/v1/health/detailed") as resp:
                second = (await resp.json())["data"]
            fired = {rule["id"]: rule["fired"] for rule in ledger.faults()}
        finally:
            ledger.clear_faults()
    # Then Horizon was read once for the lag and once for the probe
    assert (fired[lag_reads], fired[probes]) == (1, 1)
    # And both answers show the same readings, measured once
    assert first["operations"]["monitor"]["lagSeconds"] == 0
    assert second["operations"]["monitor"] == first["operations"]["monitor"]
    assert ISO_MS.fullmatch(first["operations"]["monitor"]["measuredAt"])
    assert second["dependencies"]["horizon"] == first["dependencies"]["horizon"]
    assert ISO_MS.fullmatch(first["dependencies"]["horizon"]["measuredAt"])
    assert "offerhub_monitor_lag_measured_timestamp_seconds" in exposition


async def test_with_no_horizon_cache_each_scrape_reads_horizon(aiohttp_client: Any, settings: Settings,
                                                               master_key: str, engine: Engine,
                                                               ledger: SandboxControl) -> None:
    uncached = await app_with(aiohttp_client, settings, master_key, horizon_read_cache_seconds=0)
    counted = {"service": "horizon", "method": "GET", "action": "delay", "params": {"ms": 0}, "times": 0}
    with monitor_cursor(engine, "now"):
        lag_reads = ledger.add_fault(path="/payments", **counted)["id"]
        try:
            for _ in range(2):
                async with uncached.client.get("/api/v1/health/detailed") as resp:
                    assert resp.status in (200, 503)
            fired = {rule["id"]: rule["fired"] for rule in ledger.faults()}
        finally:
            ledger.clear_faults()
    assert fired[lag_reads] == 2


async def test_an_unconfigured_provider_is_degraded(api: Api, aiohttp_client: Any, settings: Settings) -> None:
    bare = await app_with(aiohttp_client, settings, api.credential, airtm_api_key=None, trustless_api_key=None)
    async with bare.client.get("/api/v1/health/detailed") as resp:
        dependencies = (await resp.json())["data"]["dependencies"]
    assert dependencies["airtm"] == {"status": "degraded", "error": "Not configured"}
    assert dependencies["trustlessWork"] == {"status": "degraded", "error": "Not configured"}


async def test_config_advertises_currencies_limits_features_and_network(api: Api, settings: Settings) -> None:
    async with api.client.get("/api/v1/config") as resp:
        data = (await resp.json())["data"]
    assert resp.status == 200
    assert data["currencies"] == ["USD"]
    assert data["limits"] == {"order": {"min": "1.00", "max": "50000.00"},
                              "topup": {"min": "1.00", "max": "10000.00"},
                              "withdrawal": {"min": "10.00", "max": "5000.00"}}
    assert data["features"] == {"milestones": True, "disputes": True, "sse": True,
                                "airtm": settings.airtm_configured, "trustlessWork": settings.trustless_configured,
                                "manualBalanceOps": True}
    assert data["providers"]["fiat"] == "airtm"
    assert data["providers"]["escrow"] == "trustless_work"
    assert data["providers"]["payment"] in ("crypto", "airtm")
    assert data["network"] == "sandbox"
    assert SEMVER.fullmatch(data["version"])


async def test_config_reflects_the_instance_limits(api: Api, aiohttp_client: Any, settings: Settings) -> None:
    limits = {**settings.limits, "order": AmountLimits(Decimal("5"), Decimal("250.5"))}
    other = await app_with(aiohttp_client, settings, api.credential, limits=limits)
    async with other.client.get("/api/v1/config") as resp:
        data = (await resp.json())["data"]
    assert data["limits"]["order"] == {"min": "5.00", "max": "250.50"}


@pytest.mark.parametrize("request_id", ["trace-abc_123", "a", "x" * 128, "!~{}[]:;'\"<>?/|"])
async def test_a_valid_request_id_is_echoed(api: Api, request_id: str) -> None:
    reply = await api.get("/auth/me", headers={"X-Request-ID": request_id})
    assert reply.headers["X-Request-ID"] == request_id
    assert reply.body["meta"]["requestId"] == request_id


@pytest.mark.parametrize("request_id", ["x" * 129, "has space", "tab\there", ""])
async def test_an_invalid_request_id_is_replaced_by_a_uuid(api: Api, request_id: str) -> None:
    reply = await api.get("/auth/me", headers={"X-Request-ID": request_id})
    generated = reply.headers["X-Request-ID"]
    assert uuid.UUID(generated).version == 4
    assert reply.body["meta"]["requestId"] == generated


async def test_every_response_gets_a_distinct_request_id(api: Api) -> None:
    first, second = await api.get("/auth/me"), await api.get("/auth/me")
    assert uuid.UUID(first.headers["X-Request-ID"]).version == 4
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


async def test_errors_carry_the_request_id_too(api: Api) -> None:
    reply = await api.get(f"/users/usr_{'E' * 32}", headers={"X-Request-ID": "err-trace-1"})
    assert_error(reply, 404, "USER_NOT_FOUND")
    assert reply.headers["X-Request-ID"] == "err-trace-1"


@pytest.fixture
async def maintenance_off(api: Api) -> AsyncIterator[None]:
    """Whatever a test does, maintenance is off again afterwards (other tests share the database)."""
    try:
        yield
    finally:
        reply = await api.post("/admin/maintenance/disable")
        assert reply.status == 200, reply.body


@pytest.mark.usefixtures("maintenance_off")
async def test_maintenance_refuses_writes_but_keeps_reads(api: Api, aiohttp_client: Any,
                                                          settings: Settings) -> None:
    support = await new_key(api, "support", "read")
    reader = await new_key(api, "read")
    enabled = await api.as_(support["key"]).post("/admin/maintenance/enable", {"message": "Upgrading the ledger"})
    assert enabled.status == 200, enabled.body
    status = enabled.data
    assert (status["enabled"], status["message"], status["enabledBy"]) == (True, "Upgrading the ledger",
                                                                           support["id"])
    assert ISO_MS.fullmatch(status["enabledAt"])

    # Writes are refused with the message and the time maintenance began.
    refused = await api.post("/users", {"externalUserId": unique("ext")})
    details = assert_error(refused, 503, "MAINTENANCE_MODE")
    assert details == {"message": "Upgrading the ledger", "enabledAt": status["enabledAt"]}
    assert_error(await api.delete(f"/auth/api-keys/{reader['id']}"), 503, "MAINTENANCE_MODE")

    # Reads, the status, token minting and the switch itself still work.
    assert (await api.get("/users?limit=1")).status == 200
    assert (await api.as_(reader["key"]).get("/admin/maintenance/status")).data == status
    assert (await api.post(f"/auth/api-keys/{reader['id']}/token")).status == 201

    # The state is durable: a freshly started application sees it.
    fresh = await app_with(aiohttp_client, settings, api.credential)
    assert_error(await fresh.post("/users", {"externalUserId": unique("ext")}), 503, "MAINTENANCE_MODE")

    disabled = await api.as_(support["key"]).post("/admin/maintenance/disable")
    assert disabled.status == 200, disabled.body
    assert disabled.data == {"enabled": False, "message": None, "enabledAt": None, "enabledBy": None}
    created = await api.post("/users", {"externalUserId": unique("ext")})
    assert created.status == 201, created.body


@pytest.mark.usefixtures("maintenance_off")
async def test_enabling_again_updates_the_message_and_keeps_the_start(api: Api) -> None:
    first = (await api.post("/admin/maintenance/enable")).data
    assert (first["message"], first["enabledBy"]) == ("System maintenance in progress", "master")
    second = (await api.post("/admin/maintenance/enable", {"message": "Almost done"})).data
    assert (second["enabled"], second["message"], second["enabledAt"]) == (True, "Almost done",
                                                                           first["enabledAt"])


async def test_disabling_when_disabled_is_a_harmless_no_op(api: Api) -> None:
    for _ in range(2):
        reply = await api.post("/admin/maintenance/disable")
        assert reply.status == 200, reply.body
        assert reply.data["enabled"] is False
    assert (await api.get("/admin/maintenance/status")).data["enabled"] is False


async def test_the_maintenance_switch_needs_support(api: Api) -> None:
    writer = api.as_((await new_key(api, "read", "write"))["key"])
    refused = await writer.post("/admin/maintenance/enable", {"message": "nope"})
    assert assert_error(refused, 403, "INSUFFICIENT_SCOPE")["requiredScope"] == "support"
    assert (await api.get("/admin/maintenance/status")).data["enabled"] is False


async def test_the_maintenance_message_is_at_most_500_characters(api: Api) -> None:
    reply = await api.post("/admin/maintenance/enable", {"message": "m" * 501})
    assert [(f["field"], f["code"]) for f in field_errors(reply)] == [("message", "TOO_LONG")]
    assert (await api.get("/admin/maintenance/status")).data["enabled"] is False


async def test_the_maintenance_status_needs_a_credential(api: Api) -> None:
    async with api.client.get("/api/v1/admin/maintenance/status") as resp:
        body = await resp.json()
    assert resp.status == 401
    assert body["error"]["code"] == "UNAUTHORIZED"


async def _fresh_window() -> None:
    """Start near the beginning of a fixed 60 s window, so four requests land in the same one."""
    into = time.time() % 60
    if into > 55:
        await asyncio.sleep(60.05 - into)


async def test_the_request_over_the_limit_in_a_minute_is_rate_limited(api: Api, aiohttp_client: Any,
                                                             settings: Settings) -> None:
    key = (await new_key(api, "read"))["key"]
    limited = await app_with(aiohttp_client, settings, key, rate_limit_per_minute=3)
    await _fresh_window()
    remaining = []
    for _ in range(3):
        reply = await limited.get("/auth/me")
        assert reply.status == 200, reply.body
        assert reply.headers["X-RateLimit-Limit"] == "3"
        reset = int(reply.headers["X-RateLimit-Reset"])
        assert time.time() < reset <= time.time() + 60
        remaining.append(reply.headers["X-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]

    refused = await limited.get("/auth/me")
    details = assert_error(refused, 429, "RATE_LIMITED")
    assert set(details) == {"limit", "windowSeconds", "retryAfter"}
    assert details["limit"] == 3
    assert details["windowSeconds"] == 60
    assert 1 <= details["retryAfter"] <= 60
    assert refused.headers["Retry-After"] == str(details["retryAfter"])
    assert refused.headers["X-RateLimit-Remaining"] == "0"


async def test_each_key_has_its_own_budget(api: Api, aiohttp_client: Any, settings: Settings) -> None:
    first, second = (await new_key(api, "read"))["key"], (await new_key(api, "read"))["key"]
    limited = await app_with(aiohttp_client, settings, first, rate_limit_per_minute=1)
    await _fresh_window()
    assert (await limited.get("/auth/me")).status == 200
    assert_error(await limited.get("/auth/me"), 429, "RATE_LIMITED")
    other = await limited.as_(second).get("/auth/me")
    assert other.status == 200, other.body
    assert other.headers["X-RateLimit-Remaining"] == "0"


async def test_public_routes_carry_rate_limit_headers(api: Api, aiohttp_client: Any, settings: Settings) -> None:
    limited = await app_with(aiohttp_client, settings, api.credential, rate_limit_per_minute=100_000)
    async with limited.client.get("/api/v1/health") as resp:
        assert resp.status == 200
        assert resp.headers["X-RateLimit-Limit"] == "100000"
        assert 0 <= int(resp.headers["X-RateLimit-Remaining"]) < 100_000
        assert int(resp.headers["X-RateLimit-Reset"]) > time.time()
