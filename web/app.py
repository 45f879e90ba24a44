"""The aiohttp application factory and the ``web`` process entrypoint."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from redis.asyncio import Redis

from orchestrator.db import create_web_engine, libpq_url
from orchestrator.logs import configure_logging
from orchestrator.settings import Settings
from web.auth import KeyCache
from web.keys import ENGINE, EXECUTOR, KEY_CACHE, LISTENER, REDIS, SETTINGS
from web.listener import Listener
from web.middlewares import MAX_BODY, setup_middlewares
from web.routes import setup_routes

log = logging.getLogger(__name__)


async def _engine(app: web.Application) -> AsyncIterator[None]:
    app[ENGINE] = create_web_engine(app[SETTINGS].database_url)
    yield
    await app[ENGINE].dispose()


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
    app[LISTENER] = Listener(libpq_url(app[SETTINGS].database_url), app[KEY_CACHE].evict)
    app[LISTENER].start()
    yield
    await app[LISTENER].stop()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_engine, _redis, _executor, _listener])
    setup_middlewares(app)
    setup_routes(app)
    return app


def main() -> None:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    log.info("Orchestrator API listening on http://0.0.0.0:%s/api/v1", settings.port)
    web.run_app(create_app(settings), port=settings.port, access_log=None, print=None)
