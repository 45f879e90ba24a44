"""Typed application state keys (aiohttp ``AppKey``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from orchestrator.settings import Settings
from web.auth import KeyCache
from web.listener import Listener

SETTINGS = web.AppKey("settings", Settings)
ENGINE = web.AppKey("engine", AsyncEngine)
REDIS = web.AppKey("redis", Redis)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
LISTENER = web.AppKey("listener", Listener)
KEY_CACHE = web.AppKey("key_cache", KeyCache)
