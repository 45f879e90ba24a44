"""Health, configuration and the maintenance switch (spec api.md §3)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pika
from aiohttp import web
from sqlalchemy import text

from orchestrator.airtm import enterprise
from orchestrator.commands import Kind
from orchestrator.db import airtm as airtm_db
from orchestrator.events import iso, now
from orchestrator.operations import watch
from orchestrator.providers.horizon_reads import HorizonReader
from schemas import views
from schemas.base import NoBody, load
from schemas.maintenance import EnableMaintenance
from web import airtm, enqueue, metrics, render
from web.apidoc import doc
from web.auth import public, requires
from web.keys import ENGINE, EXECUTOR, HORIZON_READS, REDIS, SETTINGS
from web.request_state import BODY
from web.responses import envelope

VERSION = "0.1.0"
CHECK_TIMEOUT = 5.0


@doc("Liveness", response=views.Health)
@public
async def health(request: web.Request) -> web.Response:
    return envelope(request, {"status": "healthy", "version": VERSION, "timestamp": iso(now())})


@doc("Each dependency's health; 503 when one is unhealthy", response=views.DetailedHealth, also=(503,))
@public
async def health_detailed(request: web.Request) -> web.Response:
    """Each dependency checked in parallel with a 5 s timeout; 503 when any is unhealthy. The work waiting
    behind them (oldest pending command and chain step, the monitor's lag behind the ledger) turns the
    status ``degraded`` past its threshold (``HEALTH_*_SECONDS``)."""
    app, settings = request.app, request.app[SETTINGS]
    checks: dict[str, Callable[[], Awaitable[None]]] = {
        "database": lambda: _database(app), "redis": app[REDIS].ping,
        "rabbitmq": lambda: _rabbitmq(app),
    }
    providers = {"horizon": (settings.horizon_url + "/", True),
                 "trustlessWork": (settings.trustless_api_url, settings.trustless_configured),
                 "airtm": (settings.airtm_api_url, settings.airtm_configured)}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT)) as session:

        async def probe(name: str, url: str, configured: bool) -> dict[str, Any]:
            if name != "horizon":
                return await _provider(session, url, configured)
            # public Horizon's hourly budget (DESIGN decision 12): probed at most every few seconds
            found, measured_at = await app[HORIZON_READS].probe.get(lambda: _provider(session, url, configured))
            return {**found, "measuredAt": iso(measured_at)}

        gathered = await asyncio.gather(
            asyncio.gather(*(_timed(c) for c in checks.values())),
            asyncio.gather(*(probe(name, url, ok) for name, (url, ok) in providers.items())),
            _snapshot(app))
    results = dict(zip(checks, gathered[0], strict=True))
    results.update(dict(zip(providers, gathered[1], strict=True)))
    if settings.airtm_enabled and results["airtm"]["status"] == "healthy":
        results["airtm"] = await _treasury(request, results["airtm"])
    taken = gathered[2]
    waiting = _operations(taken, settings)
    if settings.payment_provider == "crypto" and (network := await _network(app)) is not None:
        waiting["network"] = network  # a detected network reset (DESIGN decision 35)
    statuses = {r["status"] for r in (*results.values(), *waiting.values())}
    overall = next((s for s in ("critical", "unhealthy", "degraded") if s in statuses), "healthy")
    backlog: dict[str, Any] = {}
    if not isinstance(taken, str):
        b = taken.backlog
        backlog = {"outboxUnrelayed": b.outbox_unrelayed, "outboxLagSeconds": round(b.outbox_lag_seconds, 3),
                   "commandsPending": b.commands_pending, "chainStepsOpen": b.chain_steps_open,
                   "depositsPending": b.deposits_pending}
    return envelope(request, {"status": overall, "version": VERSION, "timestamp": iso(now()),
                              "dependencies": results, "operations": waiting, "backlog": backlog},
                    status=503 if overall in ("unhealthy", "critical") else 200)


async def _network(app: web.Application) -> dict[str, Any] | None:
    try:
        async with app[ENGINE].connect() as conn:
            return watch.network_health((await conn.execute(watch.network_statement())).first())
    except Exception:
        return None  # the database check reports an unreadable database


async def _treasury(request: web.Request, found: dict[str, Any]) -> dict[str, Any]:
    """AirTM mode: the enterprise balance and whether it covers the users' balances (providers.md §3.1),
    beside the platform's treasury on the ledger."""
    settings = request.app[SETTINGS]
    try:
        async with request.app[ENGINE].connect() as conn:
            wallet = await conn.run_sync(lambda sync: enterprise.platform_key(sync, settings))
        balances, wallet = await asyncio.gather(
            asyncio.wait_for(airtm.call(request, lambda client: client.balance()), CHECK_TIMEOUT),
            _platform_wallet(settings, wallet))
        async with request.app[ENGINE].connect() as conn:
            claims = (await conn.execute(airtm_db.claims_query())).one()
    except Exception as error:
        return {**found, "status": "unhealthy", "error": f"enterprise balance unreadable ({type(error).__name__})"}
    treasury = enterprise.of(balances, claims, wallet)
    out = {**found, "treasury": treasury.as_json()}
    if not treasury.covered:
        out |= {"status": "degraded", "error": "the enterprise balance does not cover the users' balances"}
    return out


async def _platform_wallet(settings: Any, wallet: enterprise.PlatformWallet) -> enterprise.PlatformWallet:
    """The platform's treasury on the ledger (its wallet's XLM and USDC); a failed read is reported in it."""
    if wallet.public_key is None:
        return wallet
    try:
        async with HorizonReader(settings, timeout=CHECK_TIMEOUT) as horizon:
            return enterprise.on_ledger(wallet, await horizon.account(wallet.public_key))
    except Exception as error:
        return enterprise.unreadable(wallet, error)


async def _snapshot(app: web.Application) -> metrics.Snapshot | str:
    """The figures, or why they could not be read (the database check says more)."""
    try:
        return await metrics.snapshot(app)
    except Exception as error:
        return f"the backlog could not be read ({type(error).__name__})"


def _operations(taken: metrics.Snapshot | str, settings: Any) -> dict[str, dict[str, Any]]:
    """The monitor's lag and the oldest pending command and open chain step against their thresholds."""
    if isinstance(taken, str):
        unknown = {"status": "degraded", "error": taken}
        return {"monitor": unknown, "oldestPendingCommand": unknown, "oldestOpenChainStep": unknown}
    b, lag = taken.backlog, taken.monitor
    monitor: dict[str, Any] = {"thresholdSeconds": settings.health_monitor_lag_seconds,
                               "unseenPayments": lag.unseen}
    if settings.payment_provider != "crypto":  # AirTM mode watches no ledger
        monitor = {"status": "healthy", "enabled": False}
    elif lag.seconds is None:
        monitor.update(status="degraded", lagSeconds=None, error=lag.error)
    else:
        monitor.update(status=_past(lag.seconds, settings.health_monitor_lag_seconds),
                       lagSeconds=round(lag.seconds, 3))
    if settings.payment_provider == "crypto" and taken.monitor_measured_at is not None:
        monitor["measuredAt"] = iso(taken.monitor_measured_at)  # read from Horizon at most every few seconds
    out = {"monitor": monitor}
    if taken.treasury is not None:
        out["treasury"] = _treasury_pool(*taken.treasury)
    return {**out,
            "oldestPendingCommand": _age_check(b.commands_pending, b.oldest_command_seconds,
                                               settings.health_command_age_seconds),
            "oldestOpenChainStep": _age_check(b.chain_steps_open, b.oldest_chain_step_seconds,
                                              settings.health_chain_step_age_seconds)}


def _treasury_pool(figures: dict[str, Any], age: float) -> dict[str, Any]:
    """The treasury pool as the scheduler last measured it (decision 25): its USDC, the escrows it backs and
    the headroom; ``degraded`` while the headroom is under ``TREASURY_LOW_WATERMARK``."""
    return {"status": "degraded" if figures.get("low") else "healthy",
            "treasuryUsdc": figures["treasuryUsdc"], "settlementUsdc": figures["settlementUsdc"],
            "backedEscrows": figures["backedEscrows"], "backedAmount": figures["backedAmount"],
            "headroom": figures["headroom"], "lowWatermark": figures["watermark"], "ageSeconds": round(age, 3)}


def _age_check(count: int, age: float, threshold: float) -> dict[str, Any]:
    return {"status": _past(age, threshold), "count": count, "ageSeconds": round(age, 3),
            "thresholdSeconds": threshold}


def _past(value: float, threshold: float) -> str:
    return "degraded" if value > threshold else "healthy"


async def _timed(check: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as error:
        return {"status": "unhealthy", "error": type(error).__name__}
    return {"status": "healthy", "latency": round((time.monotonic() - started) * 1000, 1)}


async def _database(app: web.Application) -> None:
    async with app[ENGINE].connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _rabbitmq(app: web.Application) -> None:
    params = pika.URLParameters(app[SETTINGS].rabbitmq_url)
    params.socket_timeout = params.blocked_connection_timeout = CHECK_TIMEOUT

    def probe() -> None:
        pika.BlockingConnection(params).close()

    await asyncio.get_running_loop().run_in_executor(app[EXECUTOR], probe)


async def _provider(session: aiohttp.ClientSession, url: str, configured: bool) -> dict[str, Any]:
    if not configured:
        return {"status": "degraded", "error": "Not configured"}
    started = time.monotonic()
    try:
        async with session.get(url) as response:
            healthy = response.status < 500
    except Exception as error:
        return {"status": "unhealthy", "error": type(error).__name__}
    latency = round((time.monotonic() - started) * 1000, 1)
    return {"status": "healthy" if healthy else "unhealthy", "latency": latency}


@doc("This instance's currencies, amount limits, features and providers", response=views.Config)
@public
async def config(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    limits = {kind: {"min": f"{lim.min:.2f}", "max": f"{lim.max:.2f}"} for kind, lim in settings.limits.items()}
    return envelope(request, {
        "currencies": ["USD"], "limits": limits,
        "features": {"milestones": True, "disputes": True, "sse": True, "airtm": settings.airtm_configured,
                     "trustlessWork": settings.trustless_configured,
                     "manualBalanceOps": settings.admin_balance_operations},
        "providers": {"payment": settings.payment_provider, "fiat": "airtm", "escrow": "trustless_work"},
        "network": settings.stellar_network, "version": VERSION})


@doc("Whether maintenance mode is on", response=views.MaintenanceStatus)
@requires(None)
async def maintenance_status(request: web.Request) -> web.Response:
    return envelope(request, await render.maintenance_status(request))


@doc("Turn maintenance mode on: writes answer 503 MAINTENANCE_MODE", body=EnableMaintenance,
     response=views.MaintenanceStatus, command=True, example={"message": "Upgrading the database"})
@requires("support")
async def maintenance_enable(request: web.Request) -> web.Response:
    body = load(EnableMaintenance, request[BODY])
    state = await enqueue.run(request, Kind.ENABLE_MAINTENANCE, {"message": body["message"]})
    return await enqueue.respond(request, state)


@doc("Turn maintenance mode off", body=NoBody, response=views.MaintenanceStatus, command=True)
@requires("support")
async def maintenance_disable(request: web.Request) -> web.Response:
    load(NoBody, request[BODY])
    state = await enqueue.run(request, Kind.DISABLE_MAINTENANCE, {})
    return await enqueue.respond(request, state)
