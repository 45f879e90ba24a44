"""``GET /metrics``: Prometheus figures of the web tier and of the system behind it.

Two parts, one exposition:

- request counts and latencies per route, kept by each web process (summed across the host's web
  processes through ``web.shared_metrics``);
- figures read when scraped, from the places that hold them: RabbitMQ's queue depths, the database's
  backlogs and their ages (pending commands, open chain steps, unrelayed events, uncredited
  deposits), the monitor's lag behind the ledger (one Horizon read past its stored cursor) and the
  scheduler's last reconciliation of wallets with the book.

The actors' own figures (messages, errors, durations per actor) are served by Dramatiq's Prometheus
middleware in each ``dramatiq`` command (``WORKER_METRICS_PORT``, ``CHAIN_METRICS_PORT``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import pika
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from orchestrator.accounts import treasury
from orchestrator.db import operations as operations_db
from orchestrator.events import now
from orchestrator.operations import watch
from web import shared_metrics
from web.apidoc import doc
from web.auth import public
from web.keys import ENGINE, EXECUTOR, HORIZON_READS, SETTINGS

REQUESTS = Counter("offerhub_http_requests_total", "HTTP requests answered, by route and status.",
                   ["method", "route", "status"])
LATENCY = Histogram("offerhub_http_request_duration_seconds",
                    "Time to answer a request (to the end of the stream for SSE), by route.", ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
#: Queues and their Dramatiq twins, as ``queue`` labels.
QUEUES = ("commands", "events", "chain", "webhooks")
TWINS = {"": "", ".DQ": ".delayed", ".XQ": ".dead"}
PROBE_TIMEOUT = 5.0


def route_of(request: web.Request) -> str:
    """The route's pattern (``/api/v1/orders/{order_id}``), never the raw path: bounded label values."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def observe(request: web.Request, response: web.StreamResponse, seconds: float) -> None:
    route = route_of(request)
    REQUESTS.labels(request.method, route, str(response.status)).inc()
    LATENCY.labels(request.method, route).observe(seconds)


@dataclass(frozen=True)
class Snapshot:
    """Everything the system-wide gauges and ``/health/detailed`` read, taken at once."""

    backlog: watch.Backlog
    monitor: watch.MonitorLag
    reconciliation: tuple[watch.Reconciliation, float] | None
    #: When ``monitor`` was read from Horizon (a cached reading is up to ``HORIZON_READ_CACHE_SECONDS`` old).
    monitor_measured_at: datetime | None = None
    #: The treasury pool as the scheduler last measured it (``orchestrator.accounts.treasury.measure``) and its age.
    treasury: tuple[dict[str, Any], float] | None = None


async def snapshot(app: web.Application) -> Snapshot:
    """The database's backlogs (raises when the database does not answer within ``PROBE_TIMEOUT``), then
    the monitor's lag from its stored cursor (one Horizon read, at most every ``HORIZON_READ_CACHE_SECONDS``
    per process: ``web.horizon_reads``; its failure is part of the answer)."""

    async def read() -> tuple[Any, Any, Any]:
        async with app[ENGINE].connect() as conn:
            backlog = (await conn.execute(watch.backlog_statement())).one()
            pool = (await conn.execute(operations_db.figures(treasury.POOL_FIGURE))).first()
            return backlog, (await conn.execute(watch.figures_statement())).first(), pool

    row, stored, pool = await asyncio.wait_for(read(), PROBE_TIMEOUT)
    backlog = watch.Backlog.from_row(row)
    measured = None if pool is None else (dict(pool.figures), float(pool.age))  # not money
    if app[SETTINGS].payment_provider != "crypto":
        return Snapshot(backlog, watch.MonitorLag(None, 0, "AirTM mode has no monitor"),
                        watch.stored_reconciliation(stored), treasury=measured)

    async def read_lag() -> watch.MonitorLag:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT)) as http:
            return await watch.monitor_lag(http, app[SETTINGS].horizon_url, backlog.monitor_cursor)

    if backlog.monitor_cursor is None:  # no cursor yet: nothing is read on Horizon
        lag, measured_at = await read_lag(), now()
    else:
        lag, measured_at = await app[HORIZON_READS].monitor_lag.get(read_lag)
    return Snapshot(backlog, lag, watch.stored_reconciliation(stored), measured_at, measured)


def queue_depths(rabbitmq_url: str, prefix: str) -> dict[str, int]:
    """Ready messages per queue (a passive declare each); a queue not declared yet is left out."""
    params = pika.URLParameters(rabbitmq_url)
    params.socket_timeout = params.blocked_connection_timeout = PROBE_TIMEOUT
    connection = pika.BlockingConnection(params)
    depths: dict[str, int] = {}
    try:
        channel = connection.channel()
        for base in QUEUES:
            for suffix, label in TWINS.items():
                try:
                    frame = channel.queue_declare(f"{prefix}{base}{suffix}", passive=True)
                except pika.exceptions.ChannelClosedByBroker:
                    channel = connection.channel()
                    continue
                depths[f"{base}{label}"] = frame.method.message_count
    finally:
        connection.close()
    return depths


class _Figures(Collector):
    """Gauges built from one scrape's readings."""

    def __init__(self, taken: Snapshot, depths: dict[str, int] | None) -> None:
        self.taken, self.depths = taken, depths

    def collect(self) -> Iterator[Metric]:
        b, lag = self.taken.backlog, self.taken.monitor
        if self.depths is not None:
            queues = GaugeMetricFamily("offerhub_queue_messages", "Messages ready in each RabbitMQ queue.",
                                       labels=["queue"])
            for queue, count in sorted(self.depths.items()):
                queues.add_metric([queue], count)
            yield queues
        yield _gauge("offerhub_queue_reachable", "1 when RabbitMQ answered the queue-depth probe.",
                     0 if self.depths is None else 1)
        yield _gauge("offerhub_commands_pending", "Commands recorded and not finished.", b.commands_pending)
        yield _gauge("offerhub_oldest_pending_command_age_seconds", "Age of the oldest pending command.",
                     b.oldest_command_seconds)
        yield _gauge("offerhub_chain_steps_open", "Ledger transactions not yet confirmed or failed.",
                     b.chain_steps_open)
        yield _gauge("offerhub_oldest_open_chain_step_age_seconds", "Age of the oldest open chain step.",
                     b.oldest_chain_step_seconds)
        yield _gauge("offerhub_outbox_unrelayed", "Committed events not yet numbered for the stream.",
                     b.outbox_unrelayed)
        yield _gauge("offerhub_outbox_lag_seconds", "Age of the oldest event not yet numbered (outbox lag).",
                     b.outbox_lag_seconds)
        yield _gauge("offerhub_deposits_pending", "Deposits recorded by the monitor and not yet credited.",
                     b.deposits_pending)
        yield _gauge("offerhub_oldest_pending_deposit_age_seconds", "Age of the oldest uncredited deposit.",
                     b.oldest_deposit_seconds)
        yield _gauge("offerhub_monitor_lag_seconds",
                     "Age of the oldest ledger payment the monitor has not recorded (NaN when unknown).",
                     math.nan if lag.seconds is None else lag.seconds)
        yield _gauge("offerhub_monitor_unseen_payments", "Ledger payments after the monitor's cursor (at most 200).",
                     lag.unseen)
        if self.taken.monitor_measured_at is not None:
            yield _gauge("offerhub_monitor_lag_measured_timestamp_seconds",
                         "When the monitor's lag was read from Horizon (Unix time; cached a few seconds).",
                         self.taken.monitor_measured_at.timestamp())
        if self.taken.reconciliation is not None:
            figures, age = self.taken.reconciliation
            yield _gauge("offerhub_reconciliation_wallets_compared", "Wallets the last reconciliation compared.",
                         figures.wallets_compared)
            yield _gauge("offerhub_reconciliation_differences",
                         "Wallets whose ledger USDC differed from the book at the last reconciliation.",
                         figures.differences)
            yield _gauge("offerhub_reconciliation_problems", "Book invariants broken at the last reconciliation.",
                         figures.problems)
            yield _gauge("offerhub_reconciliation_difference_usdc",
                         "Sum of the absolute differences at the last reconciliation.",
                         # a Prometheus sample (the format has only floats), read by dashboards, never by the book
                         float(figures.difference_total))  # not money
            yield _gauge("offerhub_reconciliation_age_seconds", "Seconds since the last reconciliation.", age)
        if self.taken.treasury is not None:
            pool, age = self.taken.treasury
            # Prometheus samples, as above: floats for dashboards; the pool's book figures stay Decimal
            for name, key, text in TREASURY_GAUGES:
                yield _gauge(name, text, float(pool[key]))  # not money
            yield _gauge("offerhub_treasury_low", "1 while the pool's headroom is under TREASURY_LOW_WATERMARK.",
                         1 if pool["low"] else 0)
            yield _gauge("offerhub_treasury_measured_age_seconds", "Seconds since the scheduler measured the pool.",
                         age)


#: The treasury pool's gauges (decision 25): (name, figure, help).
TREASURY_GAUGES = (
    ("offerhub_treasury_usdc", "treasuryUsdc", "USDC the treasury accounts hold on the ledger."),
    ("offerhub_treasury_settlement_usdc", "settlementUsdc", "USDC the settlement account holds, not yet swept."),
    ("offerhub_treasury_backed_escrows", "backedEscrows", "Escrows funded (or funding) from the treasury pool."),
    ("offerhub_treasury_backed_usdc", "backedAmount", "USDC those escrows hold (or are about to hold)."),
    ("offerhub_treasury_headroom_usdc", "headroom",
     "Treasury USDC free for new escrows: ledger USDC less escrows still funding."),
)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _own_registry() -> Any:
    if shared_metrics.directory() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@doc("Prometheus metrics for the operator's scraper (outside /api/v1; not for the public proxy)",
     envelope=False, media_type="text/plain", response={"type": "string"}, tag="Operations")
@public
async def serve(request: web.Request) -> web.Response:
    app, settings = request.app, request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    probe = loop.run_in_executor(app[EXECUTOR], queue_depths, settings.rabbitmq_url, settings.queue_prefix)
    taken = await snapshot(app)
    try:
        depths: dict[str, int] | None = await asyncio.wait_for(probe, PROBE_TIMEOUT)
    except Exception:
        depths = None
    figures = CollectorRegistry(auto_describe=False)
    figures.register(_Figures(taken, depths))
    body = generate_latest(_own_registry()) + generate_latest(figures)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
