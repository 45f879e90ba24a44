"""The aiohttp application factory and the ``web`` process entrypoint."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy import exc as sa_exc

from orchestrator.accounts import platform
from orchestrator.accounts.api_keys import REVOKED_CHANNEL
from orchestrator.db import create_sync_engine, create_web_engine, libpq_url, prepared, session
from orchestrator.errors import ConfigError
from orchestrator.gc_tuning import settle
from orchestrator.logs import configure_logging
from orchestrator.operations.maintenance import CHANGED_CHANNEL
from orchestrator.settings import Settings
from web import metrics
from web.auth import KeyCache
from web.feed import EventFeed
from web.horizon_reads import HorizonReads
from web.keys import (
    ENGINE,
    EXECUTOR,
    FEED,
    HORIZON_READS,
    KEY_CACHE,
    LISTENER,
    MAINTENANCE,
    READS,
    REDIS,
    SETTINGS,
    TX_ENGINE,
)
from web.listener import Listener
from web.middlewares import MAX_BODY, MaintenanceSwitch, setup_middlewares
from web.routes import setup_routes

log = logging.getLogger(__name__)
#: Connections for the few writes that span statements (idempotency keys, webhook endpoints, statements).
TX_POOL = 5


async def _engine(app: web.Application) -> AsyncIterator[None]:
    app[TX_ENGINE] = create_web_engine(app[SETTINGS].database_url, pool_size=TX_POOL)
    app[ENGINE] = create_web_engine(app[SETTINGS].database_url, autocommit=True)
    app[READS] = prepared.open_pool(libpq_url(app[SETTINGS].database_url), name="web-reads")
    await app[READS].open(wait=False)  # connects in the background: a database still starting is waited for
    yield
    await app[READS].close()
    await app[ENGINE].dispose()
    await app[TX_ENGINE].dispose()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    app[REDIS] = Redis.from_url(app[SETTINGS].redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    yield
    await app[REDIS].aclose()


async def _executor(app: web.Application) -> AsyncIterator[None]:
    """Threads for blocking sends: pika keeps one BlockingConnection per thread."""
    app[EXECUTOR] = ThreadPoolExecutor(max_workers=8, thread_name_prefix="publish")
    yield
    app[EXECUTOR].shutdown(wait=True)


async def _listener(app: web.Application) -> AsyncIterator[None]:
    app[KEY_CACHE] = KeyCache()
    app[MAINTENANCE] = MaintenanceSwitch()
    app[FEED] = EventFeed(app[ENGINE], app[READS], idle_read_seconds=app[SETTINGS].sse_heartbeat_seconds)
    app[LISTENER] = Listener(libpq_url(app[SETTINGS].database_url), {
        REVOKED_CHANNEL: app[KEY_CACHE].evict, CHANGED_CHANNEL: app[MAINTENANCE].forget},
        on_events=app[FEED].wake)
    app[FEED].start()
    app[LISTENER].start()
    yield
    await app[LISTENER].stop()
    await app[FEED].stop()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app[HORIZON_READS] = HorizonReads(settings.horizon_read_cache_seconds)
    app.cleanup_ctx.extend([_engine, _redis, _executor, _listener])
    setup_middlewares(app)
    setup_routes(app)
    # --- operations (issue 9): Prometheus scrapes the root path, outside the versioned API ---
    app.router.add_get("/metrics", metrics.serve)
    return app


#: How long a starting web process waits for PostgreSQL before it gives up with one clear line.
DATABASE_WAIT_SECONDS = 60.0


def refuse_without_platform(settings: Settings) -> None:
    """The server does not start without the platform user (and its wallet in crypto mode).

    A database that does not answer yet (a restart, a failover, a dropped connection) is waited for:
    a web process that exited at once would, under honcho, stop every other process with it.
    """
    engine = create_sync_engine(settings.database_url, pool_size=1)
    deadline = time.monotonic() + DATABASE_WAIT_SECONDS
    try:
        while True:
            try:
                with engine.connect() as conn:
                    found = platform.find(conn, settings)
                break
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as error:
                reason = session.first_line(error)
                if time.monotonic() > deadline:
                    raise ConfigError([f"PostgreSQL did not answer for {DATABASE_WAIT_SECONDS:.0f} s: {reason}"]) \
                        from None
                print(f"PostgreSQL does not answer yet ({reason}); retrying in 1 s", file=sys.stderr)  # noqa: T201
                engine.dispose()
                time.sleep(1)
    finally:
        engine.dispose()
    if found is None or (settings.payment_provider == "crypto" and found.wallet is None):
        raise ConfigError(["the platform user (and its wallet) is missing: run `python -m orchestrator bootstrap`"])


def main() -> None:
    try:
        settings = Settings.from_env()
        refuse_without_platform(settings)
    except ConfigError as error:
        print(error.message, file=sys.stderr)  # noqa: T201 - the operator's one clear message
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    log.info("Orchestrator API listening on http://0.0.0.0:%s/api/v1", settings.port)
    app = create_app(settings)
    app.on_startup.append(_settle)  # after the cleanup contexts' start-up: pools, listener and feed are made
    # reuse_port: several web processes (honcho -c web=2) share the port and so both cores
    web.run_app(app, port=settings.port, access_log=None, print=None, reuse_port=True)


async def _settle(_: web.Application) -> None:
    """The process is up: keep its start-up objects out of the collector's way (``gc_tuning``)."""
    settle()
