"""Typed application state keys (aiohttp ``AppKey``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.settings import Settings
from web.auth import KeyCache
from web.feed import EventFeed
from web.horizon_reads import HorizonReads
from web.listener import Listener

SETTINGS = web.AppKey("settings", Settings)
#: Reads and single-statement writes run in autocommit (no BEGIN/ROLLBACK round trips).
ENGINE = web.AppKey("engine", AsyncEngine)
#: A pool of its own in transactional mode, for the few writes that must be atomic across statements.
TX_ENGINE = web.AppKey("tx_engine", AsyncEngine)
#: Plain psycopg connections for the fixed-shape hot reads (``orchestrator/db/prepared.py``).
READS = web.AppKey("reads", AsyncConnectionPool)
REDIS = web.AppKey("redis", Redis)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
LISTENER = web.AppKey("listener", Listener)
#: The newest outbox events, read once per wake-up for every SSE stream of the process.
FEED = web.AppKey("feed", EventFeed)
#: Horizon figures of the public health and metrics routes, read at most every few seconds.
HORIZON_READS = web.AppKey("horizon_reads", HorizonReads)
KEY_CACHE = web.AppKey("key_cache", KeyCache)
MAINTENANCE = web.AppKey("maintenance", object)
